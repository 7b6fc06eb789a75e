"""What vLLM and torch print while an engine starts: hidden by default, shown on request.

The environment and the warning filters ``engine_start_output`` sets, without starting vLLM (the
real start's console is checked end to end in tests/workload/test_workload_main_job.py).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import pytest

from sagellm_obs.engine import quiet

VARS = ("VLLM_LOGGING_LEVEL", "TORCH_LOGS", "TORCH_CPP_LOG_LEVEL", "PYTHONWARNINGS")


@pytest.fixture(autouse=True)
def clean(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in (*VARS, "SAGELLM_OBS_LOG_LEVEL"):
        monkeypatch.delenv(name, raising=False)
    yield
    with quiet.engine_start_output("info"):  # take our warning filter out again
        pass


def _warned(module: str) -> list[warnings.WarningMessage]:
    """The warnings a FutureWarning raised in ``module`` gives under the filters in place."""
    with warnings.catch_warnings(record=True) as caught:  # keeps the filters, records
        warnings.warn_explicit("noise", FutureWarning, "x.py", 1, module=module)
    return caught


def test_quiet_by_default() -> None:
    import os

    with quiet.engine_start_output() as extra:
        assert extra == {"use_tqdm_on_load": False}  # no weight-loading progress bar
        assert os.environ["VLLM_LOGGING_LEVEL"] == "ERROR"
        assert os.environ["TORCH_LOGS"] == "-all"
        assert os.environ["TORCH_CPP_LOG_LEVEL"] == "ERROR"  # the NUMA notice
        assert os.environ["PYTHONWARNINGS"] == "ignore"  # vLLM's EngineCore process
    assert not any(name in os.environ for name in VARS)  # scoped to the start
    # This process: warnings raised in vLLM's and torch's modules are ignored, ours are not.
    assert _warned("vllm.triton_utils.dispatcher") == []
    assert _warned("torch.distributed") == []
    assert len(_warned("sagellm_obs.engine.core")) == 1


def test_verbose_shows_vllm_and_leaves_torch_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    monkeypatch.setenv("SAGELLM_OBS_LOG_LEVEL", "info")
    with quiet.engine_start_output() as extra:
        assert extra == {}
        assert os.environ["VLLM_LOGGING_LEVEL"] == "INFO"
        assert "TORCH_LOGS" not in os.environ and "PYTHONWARNINGS" not in os.environ
    assert len(_warned("vllm.triton_utils.dispatcher")) == 1


def test_a_later_start_changes_the_level_it_set() -> None:
    import os

    with quiet.engine_start_output("error"):
        pass
    with quiet.engine_start_output("warning"):
        assert os.environ["VLLM_LOGGING_LEVEL"] == "WARNING"
        assert "TORCH_LOGS" not in os.environ  # set by the first start, taken back
    assert len(_warned("vllm.triton_utils.dispatcher")) == 1


def test_the_filter_is_back_after_a_catch_warnings_block() -> None:
    # pytest runs every test in such a block: a start in an earlier test must not count.
    with warnings.catch_warnings(), quiet.engine_start_output("error"):
        pass
    with quiet.engine_start_output("error"):
        assert _warned("torch.distributed") == []


def test_what_the_user_set_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    monkeypatch.setenv("VLLM_LOGGING_LEVEL", "DEBUG")
    monkeypatch.setenv("PYTHONWARNINGS", "error::DeprecationWarning")
    with quiet.engine_start_output():
        assert os.environ["VLLM_LOGGING_LEVEL"] == "DEBUG"
        assert os.environ["PYTHONWARNINGS"] == "error::DeprecationWarning"
    assert os.environ["PYTHONWARNINGS"] == "error::DeprecationWarning"


def test_an_unknown_level_is_refused() -> None:
    with pytest.raises(ValueError, match="log level must be one of"):
        quiet.resolve_level("loud")
