"""Logs are one JSON object per line, with audit events and without secrets."""

import json

from tests.auth.oauthflow import register, tokens_for


def test_logs_are_json_lines_with_audit_events_and_no_secrets(auth_service, browser):
    client = register(auth_service, token_endpoint_auth_method="client_secret_post")
    tokens = tokens_for(browser, client)
    text = auth_service.log_path.read_text()
    events = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert {"client_registered", "authorized", "token_issued"} <= {e.get("event") for e in events}
    for secret in (
        client["client_secret"],
        client["registration_access_token"],
        tokens["access_token"],
        tokens["refresh_token"],
    ):
        assert secret not in text
