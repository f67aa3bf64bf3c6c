"""Regenerate the output shown in the ```console blocks of README.md and docs/*.md by running their commands, as
the docs test (tests/usability/test_docs.py) runs them and then compares: the output on those pages is never
typed by hand.

    python tools/refresh_docs_output.py              # every page with a console block
    python tools/refresh_docs_output.py README.md    # one page
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.usability.test_docs import (  # noqa: E402
    RUN,
    blocks,
    console_steps,
    environment,
    pages,
    run_block,
    run_command,
)


def refresh(page: Path) -> bool:
    """Rerun the page's runnable blocks in order in a fresh folder; rewrite its console blocks' output."""
    found = [b for b in blocks(page) if b.lang in RUN and b.marker is None]
    if not any(b.lang == "console" for b in found):
        return False
    text = page.read_text(encoding="utf-8")
    env = environment()
    with tempfile.TemporaryDirectory() as folder:
        cwd = Path(folder)
        (cwd / "examples").symlink_to(ROOT / "examples")
        for block in found:
            if block.lang != "console":
                run_block(block, cwd, env)
                continue
            parts = []
            for command, _ in console_steps(block.text):
                code, out, err = run_command(command, cwd, env)
                if code != 0:
                    raise SystemExit(f"{block.where}: `{command}` failed:\n{err[-3000:]}")
                parts.append(f"$ {command}\n" + "\n".join(line.rstrip() for line in out.strip().splitlines()))
            fresh = "\n".join(parts) + "\n"
            text = text.replace("```console\n" + block.text, "```console\n" + fresh, 1)
            print(f"{block.where}: {len(parts)} command(s) rerun", file=sys.stderr)
    page.write_text(text, encoding="utf-8")
    return True


def main() -> None:
    chosen = [ROOT / name for name in sys.argv[1:]] or pages()
    for page in chosen:
        refresh(page)


if __name__ == "__main__":
    main()
