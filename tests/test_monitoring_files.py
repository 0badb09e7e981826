"""deploy/prometheus and deploy/grafana: promtool checks the scrape config and the alerting
rules and runs their unit tests (alerts_test.yml), and every metric they name is one the
processes export."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from execution.metrics import SYSTEM_METRICS

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
PROMETHEUS = DEPLOY / "prometheus"
DASHBOARD = DEPLOY / "grafana" / "brokerage.json"
METRIC_NAME = re.compile(r"\bbrokerage_[a-z_]+")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    # `make test` installs it (`make promtool`): a missing one fails rather than skips.
    path = shutil.which("promtool") or "/usr/bin/promtool"
    assert Path(path).exists(), "promtool is missing: run `make promtool`"
    return subprocess.run(
        [path, *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize(
    "args",
    [("check", "config", "prometheus.yml"), ("check", "rules", "alerts.yml")],
    ids=["config", "rules"],
)
def test_promtool_accepts_the_files(args):
    result = promtool(*args)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_alerts_fire_as_their_unit_tests_say():
    result = promtool("test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def exported_names() -> set[str]:
    names = set(SYSTEM_METRICS)
    for metric in REGISTRY.collect():
        if metric.name.startswith("brokerage_"):
            names.add(metric.name)
            names.update(
                f"{metric.name}{suffix}" for suffix in ("_total", "_bucket", "_count", "_sum")
            )
    return names


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        target["expr"]
        for panel in dashboard["panels"]
        if panel["type"] != "row"
        for target in panel["targets"]
    ]


def test_every_metric_the_alerts_and_the_dashboard_name_is_exported():
    alerts = (PROMETHEUS / "alerts.yml").read_text()
    named = set(METRIC_NAME.findall(alerts))
    for expr in dashboard_expressions():
        named.update(METRIC_NAME.findall(expr))
    assert len(named) > 15
    assert named - exported_names() == set()


def test_the_dashboard_is_grafana_json_with_one_place_for_each_panel():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "brokerage" and dashboard["timezone"] == "utc"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    cells = set()
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, panel["title"]
                cells.add((x, y))
