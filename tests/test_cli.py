"""The command line as a newcomer meets it: every error one line and a non-zero exit, --help that
lists the workloads, engine options parsed and checked before anything starts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError
from typer.testing import CliRunner

from sagellm_obs.cli import app
from sagellm_obs.cli_options import engine_options, one_line, parse_engine_arg, parse_size
from sagellm_obs.workload import WORKLOADS

CLI = [sys.executable, "-m", "sagellm_obs.cli"]


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "80", **(env or {})},
    )


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_an_unknown_workload_is_one_line_naming_the_known_ones(tmp_path: Path) -> None:
    done = _cli("run", "--workload", "nope", "--out", str(tmp_path / "run"))
    assert done.returncode == 2
    line = _one_error_line(done.stderr)
    assert "unknown workload 'nope'" in line
    for name in WORKLOADS:
        assert name in line
    assert not (tmp_path / "run").exists()  # nothing started, no empty run folder


def test_help_lists_every_workload() -> None:
    done = CliRunner().invoke(app, ["run", "--help"], env={"COLUMNS": "200"})
    assert done.exit_code == 0
    for name in WORKLOADS:
        assert name in done.output
    for option in ("--max-model-len", "--max-num-seqs", "--kv-cache-memory", "--block-size"):
        assert option in done.output
    assert "--engine-arg" in done.output and "--enable-prefix-caching" in done.output
    assert "--log-level" in done.output and "--verbose" in done.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--workload", "missing/replay.jsonl"], "no workload file missing/replay.jsonl"),
        (["run", "--model", "/no/such/model"], "no model folder /no/such/model"),
        (["run", "--slo", "ttft=abc"], "bad SLO value in 'ttft=abc'"),
        (["run", "--slo", "latency=1"], "bad SLO 'latency=1'"),
        (["run", "--kv-cache-memory", "lots"], "--kv-cache-memory: not a size: 'lots'"),
        (["run", "--engine-arg", "max_num_seqs"], "use KEY=VALUE"),
        (["run", "--log-level", "loud"], "log level must be one of debug, info, warning, error"),
        (
            ["run", "--endpoint", "http://127.0.0.1:9", "--max-model-len", "512"],
            "with --endpoint the server's own apply",
        ),
        (["serve", "--model", "./nowhere"], "no model folder ./nowhere"),
        (["serve", "--kv-cache-memory", "1XB"], "not a size"),
        (["report", "/no/such/run"], "/no/such/run is not a run folder"),
        (["compare", "/no/such/run"], "give two run folders or more"),
        (["compare", "/no/a", "/no/b"], "/no/a is not a run folder"),
        (["model", "build", "--preset", "huge"], "unknown preset 'huge'; choose from small, tiny"),
        (["protocol", "schema", "Nope"], "Nope"),
    ],
)
def test_every_cli_error_is_one_line(args: list[str], message: str) -> None:
    done = CliRunner().invoke(app, args, env={"COLUMNS": "80"})
    assert done.exit_code == 2, done.output
    assert done.exception is None or isinstance(done.exception, SystemExit)
    lines = [line for line in done.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), done.output
    assert message in lines[0]


def test_an_unknown_engine_argument_names_the_close_ones() -> None:
    """Checked against vLLM's own EngineArgs (imports vLLM) before a run folder exists."""
    pytest.importorskip("vllm")
    done = CliRunner().invoke(app, ["run", "--engine-arg", "max_num_seq=4"], env={"COLUMNS": "80"})
    assert done.exit_code == 2
    lines = [line for line in done.output.splitlines() if line.strip()]
    assert len(lines) == 1, done.output
    (line,) = lines
    assert "'max_num_seq' is not a vLLM engine argument" in line
    assert "did you mean max_num_seqs" in line


def test_an_unexpected_error_is_one_line_and_verbose_shows_its_traceback(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "manifest.json").write_text("{not json")
    done = _cli("report", str(run))
    assert done.returncode == 1
    line = _one_error_line(done.stderr)
    assert "manifest is not valid JSON" in line and "--verbose shows the traceback" in line
    loud = _cli("report", str(run), env={"SAGELLM_OBS_LOG_LEVEL": "info"})
    assert loud.returncode == 1
    assert "Traceback" in loud.stderr and "manifest is not valid JSON" in loud.stderr


def test_sizes() -> None:
    assert parse_size("256MiB") == 256 * 2**20
    assert parse_size("2G") == parse_size("2GiB") == 2 * 2**30
    assert parse_size("1.5 gib") == 3 * 2**29
    assert parse_size("4096") == 4096
    assert parse_size("auto") is None
    with pytest.raises(ValueError, match="not a size"):
        parse_size("12 parsecs")


def test_engine_arg_values() -> None:
    assert parse_engine_arg("max_num_seqs=4") == ("max_num_seqs", 4)
    assert parse_engine_arg("--gpu-memory-utilization=0.5") == ("gpu_memory_utilization", 0.5)
    assert parse_engine_arg("enforce_eager=False") == ("enforce_eager", False)
    assert parse_engine_arg("dtype=bfloat16") == ("dtype", "bfloat16")
    assert parse_engine_arg('override_generation_config={"temperature": 0}') == (
        "override_generation_config",
        {"temperature": 0},
    )
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_engine_arg("=4")


def test_engine_options_set_config_fields_and_keep_the_rest_for_vllm() -> None:
    # Keys that are EngineConfig fields set the field (the server and the manifest read them);
    # no vLLM import is needed for these.
    out = engine_options(
        max_model_len=512,
        kv_cache_memory="64MiB",
        block_size=64,
        engine_arg=["enable_prefix_caching=false", "max_model_len=2048"],
    )
    assert out == {
        "max_model_len": 2048,  # --engine-arg wins over the named option
        "kv_cache_memory_bytes": 64 * 2**20,
        "block_size": 64,
        "enable_prefix_caching": False,
    }
    assert engine_options() == {}


def test_one_line_joins_pydantic_messages() -> None:
    class Limits(BaseModel):
        a: int
        b: int

    with pytest.raises(ValidationError) as info:
        Limits.model_validate({"a": "x", "b": "y"})
    line = one_line(info.value)
    assert "\n" not in line
    assert line.count("valid integer") == 2
    assert one_line("two\n   lines") == "two lines"


def test_the_manifest_records_engine_options_given_as_keywords(tmp_path: Path) -> None:
    """``EngineConfig`` overrides: an unknown keyword is refused, not silently dropped."""
    from sagellm_obs.engine.config import EngineConfig, with_overrides

    cfg = with_overrides(EngineConfig(), {"max_model_len": 512, "extra": {"max_num_seqs": 2}})
    args = cfg.engine_args("/models/m")
    assert (args["max_model_len"], args["max_num_seqs"]) == (512, 2)
    assert "log_level" not in args  # ours, not vLLM's
    with pytest.raises(TypeError, match="unknown engine option 'max_num_seqs'"):
        with_overrides(EngineConfig(), {"max_num_seqs": 2})
    json.dumps(args)  # recorded in the manifest as is
