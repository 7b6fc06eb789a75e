"""Third-party imports that cost seconds and are rarely used, put off until first use.

``import altair`` imports ``jsonschema``, whose format checkers import ``rfc3987_syntax`` when
it is installed (Jupyter's ``jupyter-events`` asks for ``jsonschema[format-nongpl]``, which
brings it). That package compiles ~40 Earley grammars at import: 2 – 3 s of CPU in every process
that draws a chart or writes a report, for the ``iri`` format checks nobody here runs (known
upstream: python-jsonschema/jsonschema#1428, opendatahub-io/notebooks#3532). :func:`defer`
registers a stand-in package whose functions load the real one on first call, so whoever checks
an IRI still gets the real answer.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from typing import Any

_NAME = "rfc3987_syntax"
_REAL = f"{_NAME}.syntax_helpers"  # the package's __init__ is ``from .syntax_helpers import *``


def defer() -> None:
    """Register the stand-in for ``rfc3987_syntax`` unless it is loaded or not installed."""
    if _NAME in sys.modules:
        return
    try:
        spec = importlib.util.find_spec(_NAME)
    except (ImportError, ValueError):
        return
    if spec is None or not spec.submodule_search_locations:
        return
    sys.modules[_NAME] = _stand_in(spec)


def _stand_in(spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
    module = types.ModuleType(_NAME, "Stand-in for rfc3987_syntax: loads it on first use.")
    module.__spec__ = spec
    # The real package's folder: its submodules (syntax_helpers, utils) import as usual.
    module.__path__ = list(spec.submodule_search_locations or [])
    module.__file__ = spec.origin

    loaded: list[types.ModuleType] = []

    def real() -> types.ModuleType:
        if not loaded:
            helpers = importlib.import_module(_REAL)
            # From now on the namespace is the real package's (``from .syntax_helpers import *``).
            for key in getattr(helpers, "__all__", None) or dir(helpers):
                if not key.startswith("_"):
                    setattr(module, key, getattr(helpers, key))
            loaded.append(helpers)
        return loaded[0]

    def is_valid_syntax(term: str, value: str) -> bool:
        result: bool = real().is_valid_syntax(term, value)
        return result

    def __getattr__(name: str) -> Any:  # the module's attribute hook
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(real(), name)

    module.is_valid_syntax = is_valid_syntax  # type: ignore[attr-defined]
    module.__getattr__ = __getattr__  # type: ignore[method-assign]
    return module


__all__ = ["defer"]
