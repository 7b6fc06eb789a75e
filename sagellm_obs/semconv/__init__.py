"""The one home of span, attribute and metric names, units and histogram buckets.

Code, tests, docs and dashboards import names from here instead of repeating string literals.
Standard OpenTelemetry GenAI names are used where they exist; vLLM's ``gen_ai.latency.*`` keys are
emitted as well so existing vLLM dashboards keep working; everything else lives under ``sagellm.*``.
``docs/semconv.md`` lists every name (a test keeps it in sync) and which convention version each
follows.

GenAI names follow the current conventions (the ``semantic-conventions-genai`` repository, built on
semconv 1.44) by default; the names sagellm-obs emitted before stay available behind
``OTEL_SEMCONV_STABILITY_OPT_IN`` (see :func:`genai_semconv_mode`).

The names live in submodules by concept (:mod:`.attributes`, :mod:`.metrics`, :mod:`.records`,
:mod:`.app`, :mod:`.http`, :mod:`.stability`, :mod:`.env`, :mod:`.vllm`); import them from here:
``from sagellm_obs import semconv as sc``.
"""

from __future__ import annotations

from sagellm_obs.semconv.app import *  # noqa: F403
from sagellm_obs.semconv.attributes import *  # noqa: F403
from sagellm_obs.semconv.env import *  # noqa: F403
from sagellm_obs.semconv.http import *  # noqa: F403
from sagellm_obs.semconv.metrics import *  # noqa: F403
from sagellm_obs.semconv.records import *  # noqa: F403
from sagellm_obs.semconv.stability import *  # noqa: F403
from sagellm_obs.semconv.vllm import *  # noqa: F403
