"""deploy/prometheus: promtool accepts the rules and their unit tests pass; every rule is
tested firing, and queries only metrics that streamer/metrics.py defines."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

from tests.test_deploy_grafana import exposed_names, metrics_in

ROOT = Path(__file__).resolve().parents[1]
PROM = ROOT / "deploy" / "prometheus"
RULES = PROM / "lstmad-rules.yml"
RULE_TESTS = PROM / "lstmad-rules.test.yml"
NOT_METRICS = {"delta", "absent", "humanize", "bool"}


def promtool(*args: str, cwd: Path = PROM) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("promtool")
    assert exe, "promtool missing: apt-get install prometheus"
    return subprocess.run(
        [exe, *args], capture_output=True, text=True, timeout=120, cwd=cwd, check=False
    )


def rules() -> list[dict[str, str]]:
    doc = yaml.safe_load(RULES.read_text())
    return [r for g in doc["groups"] for r in g["rules"]]


def test_promtool_check_rules() -> None:
    res = promtool("check", "rules", str(RULES))
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"SUCCESS: {len(rules())} rules found" in res.stdout


def test_promtool_test_rules() -> None:
    res = promtool("test", "rules", str(RULE_TESTS))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout


def test_promtool_test_rules_fails_when_an_alert_is_wrong(tmp_path: Path) -> None:
    shutil.copy(RULES, tmp_path / RULES.name)
    broken = RULE_TESTS.read_text().replace('summary: "lstmad a:9464 is down"', 'summary: "x"')
    (tmp_path / RULE_TESTS.name).write_text(broken)
    res = promtool("test", "rules", RULE_TESTS.name, cwd=tmp_path)
    assert res.returncode != 0 and "LstmadDown" in res.stdout + res.stderr


def test_every_alert_is_tested_firing() -> None:
    doc = yaml.safe_load(RULE_TESTS.read_text())
    fired = {
        t["alertname"] for case in doc["tests"] for t in case["alert_rule_test"] if t["exp_alerts"]
    }
    assert fired == {r["alert"] for r in rules()}


def test_rules_query_only_exposed_metrics_with_job_and_severity() -> None:
    names = exposed_names()
    for r in rules():
        unknown = metrics_in(r["expr"]) - names - NOT_METRICS
        assert not unknown, f"{r['alert']}: unknown metrics {unknown}"
        assert 'job="lstmad"' in r["expr"], r["alert"]
        assert r["labels"]["severity"] in ("warning", "critical")
        assert {"summary", "description"} <= set(r["annotations"])


def test_scrape_snippet_is_a_valid_prometheus_config(tmp_path: Path) -> None:
    doc = yaml.safe_load((PROM / "scrape-lstmad.yml").read_text())
    assert doc["rule_files"] == ["/etc/prometheus/rules/lstmad-rules.yml"]
    doc["rule_files"] = [str(RULES)]  # installed path -> this checkout's copy
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text(yaml.safe_dump(doc))
    res = promtool("check", "config", str(cfg))
    assert res.returncode == 0, res.stdout + res.stderr
    assert doc["scrape_configs"][0]["job_name"] == "lstmad"
