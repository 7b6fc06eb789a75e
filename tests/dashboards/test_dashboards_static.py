"""The Grafana dashboards: generated from semconv, consistent with the provisioning."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from sagellm_obs import semconv as sc

ROOT = Path(__file__).parents[2] / "dashboards"
PROMQL_WORDS = {
    "sum", "max", "min", "rate", "increase", "histogram_quantile", "by", "on", "or", "and",
    "vector", "scalar", "clamp_max", "label_values", "topk",
}  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (label lists, strings, numbers left out)."""
    bare = re.sub(r'"[^"]*"', "", expr)
    bare = re.sub(r"\{[^}]*\}", "", bare)
    bare = re.sub(r"\b(by|on)\s*\([^)]*\)", "", bare)
    bare = re.sub(r"\[[^\]]*\]", "", bare)
    return set(re.findall(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*", bare)) - PROMQL_WORDS


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location("dash_generate", ROOT / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def dashboards() -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted((ROOT / "grafana").glob("*.json"))]


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    """The panels that query (rows only group them)."""
    return [p for p in board["panels"] if p["type"] != "row"]


def panel_exprs(board: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in panels(board) for t in p["targets"]]


def test_dashboard_json_is_what_the_generator_writes() -> None:
    assert _generator().write(check=True), "run: python dashboards/generate.py"


def test_every_metric_in_every_query_exists_in_semconv() -> None:
    known = set()
    for spec in sc.METRICS:
        for name in (spec.prometheus_name, spec.collector_prometheus_name):
            known.add(name)
            if spec.kind == "histogram":
                known.update(f"{name}_{s}" for s in ("bucket", "sum", "count"))
    for board in dashboards():
        for expr in panel_exprs(board) + [r["expr"] for r in _rules()]:
            names = metric_names(expr)
            assert names, expr
            assert names <= known, (expr, names - known)


def test_every_datasource_is_provisioned() -> None:
    prov = yaml.safe_load((ROOT / "provisioning/datasources/sagellm-obs.yaml").read_text())
    uids = {d["uid"]: d["type"] for d in prov["datasources"]}
    assert uids == {"prometheus": "prometheus", "tempo": "tempo"}
    exemplar_targets = {
        d["datasourceUid"]
        for ds in prov["datasources"]
        for d in ds.get("jsonData", {}).get("exemplarTraceIdDestinations", [])
    }
    assert exemplar_targets <= set(uids)
    assert [d["uid"] for d in prov["datasources"] if d.get("isDefault")] == ["prometheus"]
    for board in dashboards():
        templ = {t["name"]: t for t in board["templating"]["list"]}
        assert templ["datasource"]["query"] == "prometheus"
        # Imported: Grafana's dialog asks for DS_PROMETHEUS and writes its uid here.
        # Provisioned: the placeholder matches nothing and the variable takes the default
        # Prometheus (uid "prometheus", isDefault above).
        inputs = {i["name"]: i for i in board["__inputs"]}
        assert inputs["DS_PROMETHEUS"]["pluginId"] == "prometheus"
        assert templ["datasource"]["current"]["value"] == "${DS_PROMETHEUS}"
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids))
        for panel in panels(board):
            refs = [panel["datasource"]["uid"]] + [t["datasource"]["uid"] for t in panel["targets"]]
            assert all(r == "${datasource}" for r in refs), panel["title"]


def test_provisioned_dashboard_path_matches_compose_mount() -> None:
    prov = yaml.safe_load((ROOT / "provisioning/dashboards/sagellm-obs.yaml").read_text())
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    path = prov["providers"][0]["options"]["path"]
    assert any(m.split(":")[1] == path for m in mounts)


def _rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load((ROOT / "alerts.yaml").read_text())
    return [r for g in doc["groups"] for r in g["rules"]]


def test_every_query_reads_one_metrics_path_and_follows_the_pickers() -> None:
    """``$job`` picks one path (serve's /metrics or the collector): nothing counted twice; the
    request-level queries follow ``$engine`` too (the latency histograms carry the engine id).
    Only the imbalance panels read the whole fleet as well (their denominator, the fleet's p99),
    next to the picked engines."""
    fleet_wide = set(_generator().FLEET_WIDE_PANELS)
    for board in dashboards():
        templ = {t["name"]: t for t in board["templating"]["list"]}
        assert templ["job"]["multi"] is False and templ["job"]["includeAll"] is False
        for panel in panels(board):
            exprs = " ".join(t["expr"] for t in panel["targets"])
            assert 'sagellm_engine_id=~"$engine"' in exprs, panel["title"]
            for target in panel["targets"]:
                expr = target["expr"]
                for selector in re.findall(r"\{([^}]*)\}", expr):
                    if "$" in selector or "job" in selector:
                        assert 'job=~"$job"' in selector, expr
                        if panel["id"] not in fleet_wide:
                            assert 'sagellm_engine_id=~"$engine"' in selector, expr


def test_the_engine_picker_and_the_fleet_row() -> None:
    """``$engine``: many engines or all, from the engine-id label the metrics carry; the fleet
    row splits by engine (instance and data-parallel rank) and names each in the legend."""
    board = json.loads((ROOT / "grafana" / "sagellm-overview.json").read_text())
    templ = {t["name"]: t for t in board["templating"]["list"]}
    engine = templ["engine"]
    assert engine["multi"] is True and engine["includeAll"] is True
    assert engine["allValue"] == ".*"
    label = sc.SAGELLM_ENGINE_ID.replace(".", "_")
    assert engine["query"]["query"].endswith(f", {label})")
    rows = [p for p in board["panels"] if p["type"] == "row"]
    assert [r["title"] for r in rows] == ["Fleet / per engine"]
    below = [p for p in panels(board) if p["gridPos"]["y"] > rows[0]["gridPos"]["y"]]
    assert len(below) == 8
    idx = sc.SAGELLM_ENGINE_IDX.replace(".", "_")
    for panel in below:
        for target in panel["targets"]:
            if target["legendFormat"] == "fleet":
                continue
            assert f"{{{{{label}}}}}" in target["legendFormat"], panel["title"]
            assert f"by ({label}, {idx}" in target["expr"], panel["title"]
    stacked = [p["title"] for p in below if "custom" in p["fieldConfig"]["defaults"]]
    assert stacked == ["Share of requests per engine", "Share of output tokens per engine"]
    # the layout: no two panels overlap
    cells: set[tuple[int, int]] = set()
    for panel in board["panels"]:
        g = panel["gridPos"]
        mine = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not cells & mine, panel["title"]
        cells |= mine


def test_alert_rules_are_valid_and_aggregate_by_job() -> None:
    rules = _rules()
    assert rules
    for rule in rules:
        assert "by (job" in rule["expr"], rule["alert"]
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian's prometheus package ships it)")
    out = subprocess.run(
        [promtool, "check", "rules", str(ROOT / "alerts.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(rules)} rules found" in out.stdout


def test_images_are_pinned_and_the_otlp_endpoint_story_is_one() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    for name, service in compose["services"].items():
        image = service["image"]
        assert ":" in image and not image.endswith(":latest"), (name, image)
        assert re.search(r":v?\d+\.\d+\.\d+$", image), (name, image)
    collector = yaml.safe_load((ROOT / "otel-collector.yaml").read_text())
    http = collector["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
    grpc = collector["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]
    ports = compose["services"]["otel-collector"]["ports"]
    assert f"127.0.0.1:4318:{http.rsplit(':', 1)[1]}" in ports
    assert f"127.0.0.1:4317:{grpc.rsplit(':', 1)[1]}" in ports
    docs = (ROOT.parent / "docs" / "grafana.md").read_text()
    for text in (docs, (ROOT / "compose.yaml").read_text()):
        assert "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http://127.0.0.1:4318/v1/traces" in text
    assert "--host 0.0.0.0" in docs and "host.docker.internal" in docs
    # the collector's Prometheus endpoint is what the otel-collector job scrapes
    prom = yaml.safe_load((ROOT / "prometheus.yaml").read_text())
    jobs = {j["job_name"]: j for j in prom["scrape_configs"]}
    port = collector["exporters"]["prometheus"]["endpoint"].rsplit(":", 1)[1]
    assert jobs["otel-collector"]["static_configs"][0]["targets"] == [f"otel-collector:{port}"]
    assert set(jobs) == {"sagellm-obs", "otel-collector"}
    assert prom["rule_files"] == ["/etc/prometheus/alerts.yaml"]
