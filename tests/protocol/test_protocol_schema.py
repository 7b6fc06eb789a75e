"""JSON Schemas of the public types, and the import surface of the package."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import sagellm_obs.protocol as p

jsonschema = pytest.importorskip("jsonschema")

EXPECTED_NAMES = {
    "Request", "Response", "Metrics", "Timestamps", "StreamEvent", "StreamEventStart",
    "StreamEventDelta", "StreamEventEnd", "Error", "SamplingParams", "KVAllocateParams",
    "KVHandle", "ChatMessage", "ChatCompletionRequest", "ChatCompletionChoice",
    "ChatCompletionUsage", "ChatCompletionResponse", "ChatCompletionStreamDelta",
    "ChatCompletionStreamChoice", "ChatCompletionStreamResponse", "CompletionRequest",
    "CompletionChoice", "CompletionUsage", "CompletionResponse", "EmbeddingRequest",
    "EmbeddingData", "EmbeddingUsage", "EmbeddingResponse", "ModelInfo", "ModelListResponse",
    "OpenAIError", "OpenAIErrorResponse", "KVMigrateParams", "KVFreeParams", "KVEvictParams",
    "KVPrefetchParams", "KVQoSPolicy", "KVHookPayload",
}  # fmt: skip


def test_json_schemas_cover_every_public_model() -> None:
    assert set(p.json_schemas()) == EXPECTED_NAMES


@pytest.mark.parametrize("name", sorted(EXPECTED_NAMES))
def test_every_schema_is_a_valid_json_schema(name: str) -> None:
    schema = p.json_schemas()[name]
    jsonschema.Draft202012Validator.check_schema(schema)
    assert json.loads(p.schema_json(name)) == schema


def test_schemas_validate_real_payloads() -> None:
    schemas = p.json_schemas()
    req = p.Request(request_id="r", trace_id="t", max_tokens=2, temperature=0.5)
    jsonschema.validate(json.loads(req.model_dump_json()), schemas["Request"])
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(
            {"request_id": "r", "trace_id": "t", "max_tokens": 0}, schemas["Request"]
        )
    delta = {
        "event": "delta", "request_id": "r", "trace_id": "t", "engine_id": "e",
        "content": "x", "content_tokens": [1],
    }  # fmt: skip
    jsonschema.validate(delta, schemas["StreamEvent"])
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**delta, "event": "middle"}, schemas["StreamEvent"])
    assert schemas["StreamEvent"]["discriminator"]["propertyName"] == "event"


def test_schema_json_all_and_unknown() -> None:
    assert set(json.loads(p.schema_json())) == EXPECTED_NAMES
    assert json.loads(p.schema_json("Request"))["required"] == [
        "request_id",
        "trace_id",
        "max_tokens",
    ]
    with pytest.raises(KeyError, match="Nope"):
        p.schema_json("Nope")


def test_json_schemas_returns_fresh_dicts() -> None:
    first = p.json_schemas()
    first["Request"]["required"].append("x")
    assert p.json_schemas()["Request"]["required"] == ["request_id", "trace_id", "max_tokens"]


def _isort_key(name: str) -> tuple[int, str]:
    """Ruff RUF022 order: SCREAMING_CASE, then CamelCase, then the rest."""
    group = 0 if name.isupper() else 1 if name[:1].isupper() else 2
    return group, name


def test_all_is_sorted_and_resolvable() -> None:
    assert list(p.__all__) == sorted(p.__all__, key=_isort_key)
    assert len(set(p.__all__)) == len(p.__all__)
    for name in p.__all__:
        assert hasattr(p, name), name


def test_modules_import_only_pydantic_stdlib_and_each_other() -> None:
    package = Path(p.__file__).parent
    allowed = set(sys.stdlib_module_names) | {"__future__", "pydantic"}
    for path in sorted(package.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                ok = name.split(".")[0] in allowed or name.startswith("sagellm_obs.protocol")
                assert ok, f"{path.name} imports {name}"


def test_import_adds_no_heavy_modules() -> None:
    # The parent package may load telemetry; importing the protocol on top must add nothing heavy.
    root = Path(__file__).resolve().parents[2]
    code = (
        "import sys; import sagellm_obs; before = set(sys.modules); "
        "import sagellm_obs.protocol; "
        "bad = sorted({m.split('.')[0] for m in set(sys.modules) - before} & "
        "{'opentelemetry', 'vllm', 'torch', 'numpy', 'polars', 'altair', 'psutil'}); print(bad)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=root,
        env={"PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "[]"
