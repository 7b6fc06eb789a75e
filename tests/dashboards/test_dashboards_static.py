"""The Grafana dashboards: generated from semconv, consistent with the provisioning."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import yaml

from sagellm_obs import semconv as sc

ROOT = Path(__file__).parents[2] / "dashboards"
METRIC_REF = re.compile(r"\b([a-z_][a-z0-9_:]*)\{")


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location("dash_generate", ROOT / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def dashboards() -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted((ROOT / "grafana").glob("*.json"))]


def panel_exprs(board: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in board["panels"] for t in p["targets"]]


def test_dashboard_json_is_what_the_generator_writes() -> None:
    assert _generator().write(check=True), "run: python dashboards/generate.py"


def test_every_metric_in_every_query_exists_in_semconv() -> None:
    known = set()
    for spec in sc.METRICS:
        known.add(spec.prometheus_name)
        if spec.kind == "histogram":
            known.update(f"{spec.prometheus_name}_{s}" for s in ("bucket", "sum", "count"))
    for board in dashboards():
        for expr in panel_exprs(board):
            names = set(METRIC_REF.findall(expr))
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
    for board in dashboards():
        templ = {t["name"]: t for t in board["templating"]["list"]}
        assert templ["datasource"]["query"] == "prometheus"
        assert templ["datasource"]["current"]["value"] in uids
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids))
        for panel in board["panels"]:
            refs = [panel["datasource"]["uid"]] + [t["datasource"]["uid"] for t in panel["targets"]]
            assert all(r == "${datasource}" for r in refs), panel["title"]


def test_provisioned_dashboard_path_matches_compose_mount() -> None:
    prov = yaml.safe_load((ROOT / "provisioning/dashboards/sagellm-obs.yaml").read_text())
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    path = prov["providers"][0]["options"]["path"]
    assert any(m.split(":")[1] == path for m in mounts)
