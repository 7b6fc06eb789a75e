"""Package-level contracts: light imports, the public facade, the CLI entry points."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

from tests.conftest import need

HEAVY = ("vllm", "torch", "altair", "ipywidgets", "transformers")


@pytest.mark.parametrize(
    "module", ["sagellm_obs", "sagellm_obs.protocol", "sagellm_obs.models", "sagellm_obs.store"]
)
def test_import_is_light(module: str) -> None:
    code = f"import sys, {module}; print([m for m in {HEAVY!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# IRIs jsonschema's "iri" format check must accept and refuse (RFC 3987 section 2.2).
_IRIS = ["http://example.com/ö?q=1#x", "urn:isbn:0451450523", "no scheme", "http://[::1", ":x"]
_CHECK_IRIS = f"""
import json, sys, jsonschema
checker = jsonschema.Draft7Validator.FORMAT_CHECKER
print(json.dumps([[checker.conforms(v, "iri") for v in {_IRIS!r}],
                  "rfc3987_syntax.syntax_helpers" in sys.modules]))
"""


def test_charts_do_not_pay_for_jsonschemas_iri_grammars() -> None:
    """``rfc3987_syntax`` (~40 Earley grammars, 2 – 3 s at import) loads only when an IRI is
    checked, and then answers as it does in a process without sagellm_obs."""
    found = importlib.util.find_spec("rfc3987_syntax") is not None
    need(found, "rfc3987-syntax (jupyter's jsonschema[format-nongpl])", "make install")
    loaded = (
        "import sys, sagellm_obs, altair; print('rfc3987_syntax.syntax_helpers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", loaded], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    answers = []
    for prefix in ("", "import sagellm_obs, altair\n"):
        run = [sys.executable, "-c", prefix + _CHECK_IRIS]
        out = subprocess.run(run, capture_output=True, text=True, check=True)
        answers.append(json.loads(out.stdout))
    plain, ours = answers
    assert plain[1] and ours[1]  # the real grammars answered both times
    assert ours[0] == plain[0] and True in plain[0] and False in plain[0]


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
