"""The chart's alerts and dashboard queries, checked by Prometheus's own promtool.

promtool comes from Debian's prometheus package (`make services` installs it).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.chart.conftest import CHART, by_kind, render

ALERTS = CHART / "files" / "alerts.yaml"
ALERT_TESTS = Path(__file__).with_name("alert_rules_test.yaml")


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool not found: `make services` installs Debian's prometheus package, which has it")
    return found


def run(promtool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool, *args], capture_output=True, text=True, timeout=120, check=False)


def test_the_alert_rules_are_valid(promtool: str) -> None:
    result = run(promtool, "check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_chart_ships_exactly_the_tested_rules() -> None:
    (rule,) = by_kind(render("-f", str(CHART / "ci" / "ha-values.yaml")), "PrometheusRule")
    assert rule["spec"] == yaml.safe_load(ALERTS.read_text())


def test_each_alert_fires_for_the_object_in_trouble_and_only_after_its_for(promtool: str) -> None:
    tested = {case["alertname"] for test in yaml.safe_load(ALERT_TESTS.read_text())["tests"]
              for case in test["alert_rule_test"]}  # fmt: skip
    alerts = {
        rule["alert"] for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]
    }
    assert alerts - tested == set(), "every alert has a unit test"
    result = run(promtool, "test", "rules", str(ALERT_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dashboard_queries_are_valid_promql(promtool: str, tmp_path: Path) -> None:
    # promtool parses PromQL in rule files: each panel query becomes a recording rule, with the
    # dashboard's $tenant variable as Grafana would substitute it.
    dashboard = json.loads((CHART / "files" / "dashboard.json").read_text())
    queries = [target["expr"].replace("$tenant", ".*") for panel in dashboard["panels"]
               for target in panel["targets"]]  # fmt: skip
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:panel_query_{index}", "expr": query} for index, query in enumerate(queries)
    ]}]}  # fmt: skip
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump(rules))
    result = run(promtool, "check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(queries)} rules found" in result.stdout
