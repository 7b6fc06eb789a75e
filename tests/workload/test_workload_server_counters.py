"""Reading a server's vLLM counters (``run --endpoint``): parsing, deltas, unreachable servers.

The real-server checks (deltas equal to our spans and counters) are in tests/server.
"""

from __future__ import annotations

import socket

import pytest

from sagellm_obs.workload.server_counters import (
    CountersAround,
    ServerCounters,
    counters_delta,
    hit_rate_text,
    parse_counters,
)

TEXT = """\
# HELP vllm:prefix_cache_queries Prefix cache queries, in terms of number of queried tokens.
# TYPE vllm:prefix_cache_queries counter
vllm:prefix_cache_queries_total{engine="0",model_name="tiny"} 1000.0
vllm:prefix_cache_queries_total{engine="1",model_name="tiny"} 24.0
vllm:prefix_cache_queries_created{engine="0",model_name="tiny"} 1.7e+09
# TYPE vllm:prefix_cache_hits counter
vllm:prefix_cache_hits_total{engine="0",model_name="tiny"} 768.0
# TYPE vllm:request_success counter
vllm:request_success_total{engine="0",finished_reason="stop",model_name="tiny"} 3.0
vllm:request_success_total{engine="0",finished_reason="length",model_name="tiny"} 5.0
# TYPE sagellm_prompt_tokens counter
sagellm_prompt_tokens_total 99.0
"""


def test_parse_sums_labels_and_ignores_created_and_others() -> None:
    c = parse_counters(TEXT)
    assert c == ServerCounters(prefix_queries=1024, prefix_hits=768, requests=8)
    assert c.prefix_hit_rate == 0.75
    assert hit_rate_text(c.as_dict()) == "75.0% (768 of 1,024 tokens)"


def test_not_vllm_is_an_error() -> None:
    with pytest.raises(ValueError, match="no vLLM counters"):
        parse_counters("# TYPE up gauge\nup 1\n")
    with pytest.raises(ValueError, match="invalid metric name"):  # prometheus_client's words
        parse_counters("<html>not metrics</html>")


def test_delta_and_a_restarted_server() -> None:
    before = ServerCounters(prefix_queries=100, prefix_hits=50, requests=2)
    after = ServerCounters(prefix_queries=160, prefix_hits=20, requests=5)
    # hits went down: the server restarted, its new value counts in full
    assert counters_delta(before, after) == ServerCounters(
        prefix_queries=60, prefix_hits=20, requests=3
    )
    assert ServerCounters().prefix_hit_rate is None


def test_an_unreachable_server_is_left_out_with_its_reason() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    around = CountersAround([f"http://127.0.0.1:{port}/v1"])
    around.start()
    got = around.finish()
    assert list(got) == ["errors"]
    assert "ConnectError" in got["errors"][f"http://127.0.0.1:{port}/v1"]
