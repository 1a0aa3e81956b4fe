"""Alert rules (promtool), the Grafana dashboard, and the metric names they rely on."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from dungeon.metrics import Metrics

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "ops" / "prometheus" / "dungeon-rules.yml"
RULE_TESTS = ROOT / "ops" / "prometheus" / "dungeon-rules.test.yml"
DASHBOARD = ROOT / "ops" / "grafana" / "dungeon-dashboard.json"
RUNBOOKS = ROOT / "docs" / "runbooks"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (Debian package 'prometheus'); "
                             ".ci/run installs it")

METRIC = re.compile(r"\b(dungeon_[a-z0-9_]+)\b")
RECORDED = re.compile(r"\b(dungeon:[a-z0-9_:]+)\b")
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"),
            "gauge": ("",)}


def exported_series():
    """Every series name the service can export, as Prometheus sees it."""
    names = set()
    for family in Metrics().registry.collect():
        names |= {family.name + suffix for suffix in SUFFIXES[family.type]}
    return names


def rules():
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"]
            for rule in group["rules"]]


def dashboard_expressions():
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [target["expr"] for panel in panels for target in panel["targets"]]


@needs_promtool
def test_alert_rules_are_valid():
    result = subprocess.run([PROMTOOL, "check", "rules", str(RULES)], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_alert_rule_unit_tests_pass():
    result = subprocess.run([PROMTOOL, "test", "rules", str(RULE_TESTS)], capture_output=True,
                            text=True, cwd=RULE_TESTS.parent)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_test_summary_description_and_runbook():
    tested = set(re.findall(r"alertname: (\w+)", RULE_TESTS.read_text()))
    for rule in rules():
        if "alert" not in rule:
            continue
        assert rule["alert"] in tested
        annotations = rule["annotations"]
        assert annotations["summary"] and "{{ $value" in annotations["description"]
        assert (ROOT / annotations["runbook_url"]).is_file(), annotations["runbook_url"]


@pytest.mark.parametrize("expr", [r["expr"] for r in rules()] + dashboard_expressions())
def test_expressions_use_only_exported_metrics_and_recorded_series(expr):
    recorded = {rule["record"] for rule in rules() if "record" in rule}
    assert set(METRIC.findall(expr)) <= exported_series()
    assert set(RECORDED.findall(expr)) <= recorded


@needs_promtool
def test_dashboard_expressions_are_valid_promql(tmp_path):
    group = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:panel_{i}", "expr": expr}
        for i, expr in enumerate(dashboard_expressions())]}]}
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump(group))
    result = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_covers_what_on_call_needs():
    titles = " | ".join(p["title"].lower() for p in json.loads(DASHBOARD.read_text())["panels"])
    for topic in ("success rate by provider", "fallbacks", "placeholder", "circuit breaker",
                  "latency", "session lookups", "cache hit ratio", "http"):
        assert topic in titles, topic


def test_every_runbook_has_symptoms_queries_causes_and_actions():
    books = sorted(RUNBOOKS.glob("*.md"))
    assert len(books) >= 6
    for book in books:
        text = book.read_text().lower()
        for section in ("## symptoms", "## look at", "## likely causes", "## what to do"):
            assert section in text, f"{book.name}: {section}"
