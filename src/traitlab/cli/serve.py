"""``traitlab serve``: the OpenAI-compatible server with per-request personas and its web page."""

from __future__ import annotations

import ipaddress
import socket
import sys
from pathlib import Path

import typer

from traitlab.cli.common import DEVICE, DTYPE, FAMILY, MODEL, read_family
from traitlab.errors import ConfigError
from traitlab.model.builtins import ORGANISM


def serve(
    model: str = MODEL,
    persona: list[str] = typer.Option([], "--persona", "-P",
                                      help="NAME=ARTIFACT[:SCALE], repeatable; SCALE (default 1) applies to "
                                           "requests that do not name the persona."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind (default: loopback only)."),
    port: int = typer.Option(8000, "--port"),
    api_key: str | None = typer.Option(None, "--api-key", envvar="TRAITLAB_API_KEY",
                                       help="Require 'Authorization: Bearer KEY' on every API route."),
    served_name: str | None = typer.Option(None, "--served-model-name",
                                           help="Model id clients send (default: the --model value)."),
    max_tokens: int = typer.Option(512, "--max-tokens", help="Largest max_tokens a request may ask for."),
    max_prompt_tokens: int = typer.Option(2048, "--max-prompt-tokens", help="Longest prompt, in tokens."),
    max_queue: int = typer.Option(64, "--max-queue", help="Waiting requests before 429."),
    max_batch: int = typer.Option(16, "--max-batch", help="Requests decoded together in one step."),
    threads: int | None = typer.Option(None, "--threads", help="torch CPU threads (default: torch's choice)."),
    family: Path | None = FAMILY,
    dtype: str | None = DTYPE,
    device: str | None = DEVICE,
) -> None:
    """Serve a model over an OpenAI-compatible API, with per-request personas, a monitor and a web page."""
    for name, value, low in (("--port", port, 1), ("--max-tokens", max_tokens, 1),
                             ("--max-prompt-tokens", max_prompt_tokens, 1), ("--max-queue", max_queue, 0),
                             ("--max-batch", max_batch, 1), ("--threads", 1 if threads is None else threads, 1)):
        if value < low or (name == "--port" and value > 65535):
            raise ConfigError(f"{name} {value} is out of range")
    if api_key is not None and not api_key.strip():
        raise ConfigError("--api-key is empty")
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError:
        raise ConfigError("traitlab serve needs the serve extra: pip install 'traitlab[serve]'") from None

    from traitlab.model import load_model
    from traitlab.serve.app import ServeLimits, create_app
    from traitlab.serve.engine import Engine
    from traitlab.serve.personas import PersonaSet, read_persona_specs

    _check_bind(host, port)
    specs = read_persona_specs(persona)  # names, files and artifacts are checked before the model loads
    family_override = read_family(family)
    if not _loopback(host) and api_key is None:
        print(f"warning: serving on {host} without --api-key: anyone who can reach it can use it", file=sys.stderr)
    if threads:
        import torch

        torch.set_num_threads(threads)
    lm = load_model(model, dtype=dtype, device=device, family=family_override)
    personas = PersonaSet.load(lm, specs)
    engine = Engine(lm, personas, max_batch=max_batch, max_queue=max_queue)
    name = served_name or _default_name(model)
    app = create_app(engine, name, api_key=api_key,
                     limits=ServeLimits(max_tokens=max_tokens, max_prompt_tokens=max_prompt_tokens))
    for persona_name, loaded in personas.personas.items():
        stored = loaded.intervention.scale
        print(f"persona {persona_name}: {loaded.intervention.name}, default slider {loaded.default_scale:g} × stored "
              f"scale {stored:g} = effective {loaded.default_scale * stored:g}", file=sys.stderr)
    shown = f"[{host}]" if ":" in host else host
    print(f"traitlab serve: {name} with {len(personas)} persona(s) on http://{shown}:{port}/ "
          f"(API at /v1{', bearer key required' if api_key else ''})", file=sys.stderr, flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


def _check_bind(host: str, port: int) -> None:
    """Bind ``host:port`` once before the model loads, so a bad address or a busy port is one error line."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, ValueError):
        raise ConfigError(f"--host {host} is not an address or name this machine can bind") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _default_name(model: str) -> str:
    if model == ORGANISM:
        return model
    path = Path(model).expanduser()
    return path.resolve().name if path.exists() else model
