"""Property-based fuzz of the JSON endpoints against services/auth/openapi.yaml (schemathesis):
no 5xx, and every response's status, content type, headers and body as described. Bounded."""

from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

SPEC = Path(__file__).resolve().parents[2] / "services" / "auth" / "openapi.yaml"
schema = schemathesis.openapi.from_path(str(SPEC))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]

pytestmark = pytest.mark.slow


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_json_endpoints_match_their_description(case, auth_service):
    host = "time.example.test" if "protected-resource" in case.path else "auth.example.test"
    headers = {"Host": host, "X-Forwarded-Proto": "https"}
    if case.path == "/verify":
        headers = {}
    response = case.call(base_url=auth_service.url, headers=headers, timeout=10)
    case.validate_response(response, checks=CHECKS)
