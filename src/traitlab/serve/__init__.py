"""``traitlab serve``: an OpenAI-compatible server with per-request personas, a persona monitor and a web page.

Needs the ``serve`` extra (fastapi, uvicorn). ``create_app(engine, model_name)`` builds the FastAPI app around an
``Engine`` (the scheduler thread that owns the model); ``build_server`` does it all from a loaded model.
"""

from traitlab.serve.engine import Engine, GenRequest, QueueFull
from traitlab.serve.personas import PersonaSet

__all__ = ["Engine", "GenRequest", "PersonaSet", "QueueFull"]
