"""The example scrape configuration and alert rules load in Prometheus's own checker, scrape what the roles
deploy, alert on what the issue asks for, and name only metrics that docs/metrics.md documents and the
services serve."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from mcp_gateway_auth import metrics as auth_metrics  # noqa: F401 - registers the service's counters
from mcp_gateway_proxy.metrics import Metrics as BridgeMetrics
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "prometheus"
DOC = (REPO / "docs" / "metrics.md").read_text()


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    # scripts/bootstrap installs Debian's prometheus package for it.
    binary = shutil.which("promtool")
    assert binary, "promtool is missing: run scripts/bootstrap"
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=60, check=False)


def rules() -> list[dict]:
    groups = yaml.safe_load((EXAMPLES / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_promtool_accepts_the_scrape_configuration_and_its_rules():
    result = promtool("check", "config", str(EXAMPLES / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 5 rules found" in result.stdout + result.stderr


def test_promtool_accepts_the_alert_rules():
    result = promtool("check", "rules", str(EXAMPLES / "alerts.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_alerts_fire_on_the_series_that_should_raise_them():
    # alerts_test.yml: a target down for 2 minutes, one refresh-token reuse (and quiet 15 minutes later),
    # a certificate 10 days from expiry.
    result = promtool("test", "rules", str(EXAMPLES / "alerts_test.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_scrape_configuration_reaches_each_part_on_the_roles_default_addresses():
    config = yaml.safe_load((EXAMPLES / "prometheus.yml").read_text())
    defaults = {
        path.parent.parent.name: yaml.safe_load(path.read_text()) for path in REPO.glob("roles/*/defaults/main.yml")
    }
    targets = {
        job["job_name"]: [t for c in job["static_configs"] for t in c["targets"]] for job in config["scrape_configs"]
    }
    assert targets["mcp-gateway-auth"] == [f"127.0.0.1:{defaults['gateway']['gateway_auth_port']}"]
    assert targets["mcp-gateway-traefik"] == [defaults["traefik"]["traefik_internal_address"]]
    assert all(t.startswith("127.0.0.1:") for t in targets["mcp-gateway-bridge"])
    assert config["rule_files"] == ["alerts.yml"]


def test_the_alerts_cover_down_certificates_errors_and_refresh_reuse():
    by_name = {rule["alert"]: rule for rule in rules()}
    assert "up{" in by_name["McpGatewayTargetDown"]["expr"]
    assert "traefik_tls_certs_not_after" in by_name["McpGatewayCertificateExpiresSoon"]["expr"]
    assert "14 * 86400" in by_name["McpGatewayCertificateExpiresSoon"]["expr"]
    assert '{status=~"5.."}' in by_name["McpGatewayAuthErrors"]["expr"]
    assert '{code=~"5.."}' in by_name["McpGatewayServiceErrors"]["expr"]
    assert "mcpgw_auth_refresh_reuse_detections_total" in by_name["McpGatewayRefreshTokenReused"]["expr"]
    for rule in by_name.values():
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"]
        # Each alert is in the documentation's table.
        assert f"`{rule['alert']}`" in DOC


def test_every_metric_an_alert_uses_is_documented():
    for rule in rules():
        for name in re.findall(r"\b((?:mcpgw_auth|mcp_proxy|traefik)_[a-z_]+)", rule["expr"]):
            assert f"`{name}`" in DOC, name


def served_by_the_auth_service() -> set[str]:
    # Imported in this process without PROMETHEUS_MULTIPROC_DIR: the counters are in the default registry.
    text = generate_latest(REGISTRY).decode()
    return {
        family.name + ("_total" if family.type == "counter" else "")
        for family in text_string_to_metric_families(text)
        if family.name.startswith("mcpgw_auth_") and not family.name.endswith("_created")
    }


def served_by_a_bridge() -> set[str]:
    counters = set(re.findall(r"^# TYPE (\S+)", BridgeMetrics().render(), re.M))
    # Its gauges are registered by the application (app.py), not by an empty Metrics().
    source = (REPO / "services" / "mcp-proxy" / "mcp_gateway_proxy" / "app.py").read_text()
    return counters | set(re.findall(r'"(mcp_proxy_[a-z_]+)": ', source))


@pytest.mark.parametrize(
    ("prefix", "served"), [("mcpgw_auth_", served_by_the_auth_service), ("mcp_proxy_", served_by_a_bridge)]
)
def test_the_documentation_names_exactly_the_metrics_the_services_serve(prefix, served):
    documented = set(re.findall(rf"`({prefix}[a-z_]+)`", DOC))
    assert documented == served()
