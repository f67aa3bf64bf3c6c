"""Every ```python, ```bash and ```console block of README.md and docs/*.md runs (issue #25), so no example can
rot: python blocks as scripts, bash blocks with ``traitlab`` = ``python -m traitlab``, console blocks command by
command with their stdout compared to the output shown. Each page runs in its own fresh temporary folder (with
``examples/`` linked in), its blocks in order, so a later block may use a file an earlier one wrote. A block whose
line right before the fence is ``<!-- no-run: REASON -->`` is skipped; a marker without a reason, or not right
before a fence, fails."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUN = ("python", "bash", "console")
FENCE = re.compile(r"^```([\w+-]*)\s*$")
MARKER = re.compile(r"^<!--\s*no-run:(.*?)-->\s*$")
BASH_PRELUDE = 'set -euo pipefail\ntraitlab() { "$TRAITLAB_PYTHON" -m traitlab "$@"; }\n'


@dataclasses.dataclass
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    marker: str | None  # the line right before the fence, when it is a no-run marker

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def blocks(page: Path) -> list[Block]:
    lines = page.read_text(encoding="utf-8").splitlines()
    found, i = [], 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if match and match.group(1):
            end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith("```")), len(lines))
            before = lines[i - 1] if i else ""
            found.append(Block(page, i + 1, match.group(1), "\n".join(lines[i + 1:end]) + "\n",
                               before if MARKER.match(before) else None))
            i = end + 1
        else:
            i += 1
    return found


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT), env.get("PYTHONPATH", "")])
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["TRAITLAB_PYTHON"] = sys.executable
    env.setdefault("COLUMNS", "100")
    return env


def console_steps(text: str) -> list[tuple[str, str]]:
    """(command, expected stdout) pairs of a console block: ``$ `` lines (``\\``-continued) and what follows."""
    steps: list[tuple[str, list[str]]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("$ "):
            command = [lines[i][2:]]
            while command[-1].endswith("\\") and i + 1 < len(lines):
                i += 1
                command.append(lines[i])
            steps.append(("\n".join(command), []))
        elif steps:
            steps[-1][1].append(lines[i])
        i += 1
    return [(command, "\n".join(out)) for command, out in steps]


def _normalized(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip().splitlines())


def logical_lines(text: str) -> list[str]:
    """A bash block's commands: backslash-continued lines joined; comment-only and blank lines dropped."""
    joined = text.replace("\\\n", " ")
    return [line for line in joined.splitlines() if shlex.split(line, comments=True)]


def run_command(command: str, cwd: Path, env: dict[str, str]) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of one command. A plain ``traitlab ...`` runs in this process (``main(args)``
    with the output captured): the same code path, without importing torch again for every command; anything
    else (pipes, other programs) runs in bash with ``traitlab`` = ``python -m traitlab``."""
    args = shlex.split(command.replace("\\\n", " "), comments=True)
    if args and args[0] == "traitlab" and not any(a in ("|", "||", "&&", ";", ">", ">>", "<", "&") for a in args):
        from traitlab.cli import main
        from traitlab.progress import set_lines, set_quiet

        out, err = io.StringIO(), io.StringIO()
        previous = Path.cwd()
        os.chdir(cwd)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    main(args[1:])
                    code = 0
                except SystemExit as exc:
                    code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        finally:
            os.chdir(previous)
            set_quiet(False)
            set_lines(False)
        return code, out.getvalue(), err.getvalue()
    done = subprocess.run(["bash", "-c", BASH_PRELUDE + command], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=900)
    return done.returncode, done.stdout, done.stderr


def run_block(block: Block, cwd: Path, env: dict[str, str]) -> None:
    if block.lang == "python":
        script = cwd / f"block_{block.line}.py"
        script.write_text(block.text, encoding="utf-8")
        done = subprocess.run([sys.executable, str(script)], cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, f"{block.where} failed:\n{done.stderr[-3000:]}"
    elif block.lang == "bash":
        for command in logical_lines(block.text):
            code, _, err = run_command(command, cwd, env)
            assert code == 0, f"{block.where}: `{command}` failed:\n{err[-3000:]}"
    else:
        for command, expected in console_steps(block.text):
            code, out, _ = run_command(command, cwd, env)
            assert code == 0, f"{block.where}: `{command}` failed"
            assert _normalized(out) == _normalized(expected), (
                f"{block.where}: `{command}` printed something else than the page shows (regenerate it with "
                f"`python tools/refresh_docs_output.py`):\n{out}")


def test_no_run_markers_give_a_reason_and_sit_right_before_a_fence():
    for page in pages():
        lines = page.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines, 1):
            if line.lstrip().startswith("<!--") and "no-run" in line:
                match = MARKER.match(line)
                assert match and match.group(1).strip(), f"{page.name}:{number}: no-run marker without a reason"
                following = lines[number] if number < len(lines) else ""
                assert FENCE.match(following), f"{page.name}:{number}: no-run marker not right before a fence"


def test_the_parser_finds_blocks_markers_and_console_steps(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("x\n<!-- no-run: needs a GPU -->\n```python\nprint(1)\n```\n\n```console\n$ traitlab --version"
                    "\ntraitlab 0.1.0\n$ echo a \\\n  b\na b\n```\n```yaml\nk: v\n```\n", encoding="utf-8")
    found = blocks(page)
    assert [(b.lang, b.line, b.marker is not None) for b in found] == [("python", 3, True), ("console", 7, False),
                                                                       ("yaml", 14, False)]
    assert console_steps(found[1].text) == [("traitlab --version", "traitlab 0.1.0"), ("echo a \\\n  b", "a b")]
    assert logical_lines("# a comment\ntraitlab a \\\n  --b c   # why\n\ntraitlab d\n") == [
        "traitlab a    --b c   # why", "traitlab d"]


@pytest.mark.parametrize("page", pages(), ids=lambda p: p.name)
def test_every_code_block_runs(page, tmp_path):
    runnable = [b for b in blocks(page) if b.lang in RUN and b.marker is None]
    if not runnable:
        pytest.skip(f"{page.name} has no runnable block")
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    env = environment()
    for block in runnable:
        run_block(block, tmp_path, env)
