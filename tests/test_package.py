"""Package-level contracts: light imports, the public facade, the CLI entry points."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("vllm", "torch", "altair", "ipywidgets", "transformers")


@pytest.mark.parametrize(
    "module", ["sagellm_obs", "sagellm_obs.protocol", "sagellm_obs.models", "sagellm_obs.store"]
)
def test_import_is_light(module: str) -> None:
    code = f"import sys, {module}; print([m for m in {HEAVY!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_request_schema_required_fields() -> None:
    code = "import sagellm_obs.protocol as p; print(p.Request.model_json_schema()['required'])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['request_id', 'trace_id', 'max_tokens']"


def test_cli_protocol_schema() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "sagellm_obs.cli", "protocol", "schema", "Request"],
        capture_output=True,
        text=True,
        check=True,
    )
    schema = json.loads(out.stdout)
    assert schema["required"] == ["request_id", "trace_id", "max_tokens"]


def test_cli_rejects_bad_slo() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "sagellm_obs.cli", "run", "--slo", "latency=fast"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2
    assert "bad SLO" in out.stderr


def test_public_facade_lists_its_names() -> None:
    import sagellm_obs

    for name in sagellm_obs.__all__:
        assert getattr(sagellm_obs, name) is not None
