"""An OpenAI-compatible HTTP server over the instrumented engine (FastAPI + uvicorn).

Importing this package imports FastAPI and vLLM's engine module; ``sagellm_obs`` itself does not
import it.

Example:
    .. code-block:: python

        from sagellm_obs.server import serve

        if __name__ == "__main__":
            serve("tiny", port=8000)  # prints "serving on http://127.0.0.1:8000"
"""

from __future__ import annotations

from sagellm_obs.server.app import create_app
from sagellm_obs.server.errors import APIError
from sagellm_obs.server.serve import BackgroundServer, ServerOptions, run_server, serve

__all__ = ["APIError", "BackgroundServer", "ServerOptions", "create_app", "run_server", "serve"]
