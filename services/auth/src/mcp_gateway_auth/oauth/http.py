"""The HTTP request as authlib sees it: always the public https URI, whatever hop reached the service,
and an authorization request replayed from storage after the GitHub login or the consent page."""

from __future__ import annotations

import re

from authlib.oauth2.rfc6749 import (
    OAuth2Request,
)
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload, JsonPayload, JsonRequest
from flask import request as flask_request

from .. import untrusted_json

_TOKEN_WORD = re.compile(r"^[A-Za-z0-9_:.\- ]{1,100}$")


def _safe_word(value):
    """authlib quotes response_type and grant_type into error descriptions, which must be plain
    ASCII without quotes or backslashes; anything else is simply an unsupported value."""
    if value is None or _TOKEN_WORD.match(value):
        return value
    return "unsupported"


class _FlaskPayload(BasicOAuth2Payload):
    def __init__(self, values) -> None:
        self._values = values

    @property
    def response_type(self):
        return _safe_word(super().response_type)

    @property
    def grant_type(self):
        return _safe_word(super().grant_type)

    @property
    def data(self):
        return self._values

    @property
    def datalist(self):
        return {key: self._values.getlist(key) for key in self._values}


class GatewayRequest(OAuth2Request):
    def __init__(self, issuer: str) -> None:
        super().__init__(
            flask_request.method, issuer + flask_request.full_path.rstrip("?"), headers=flask_request.headers
        )
        self.payload = _FlaskPayload(flask_request.values)

    @property
    def args(self):
        return flask_request.args

    @property
    def form(self):
        return flask_request.form


class StoredRequest(OAuth2Request):
    """An authorization request replayed from storage after the GitHub login or the consent page."""

    def __init__(self, issuer: str, params: dict[str, str]) -> None:
        super().__init__("GET", issuer + "/authorize", headers={})
        self.payload = BasicOAuth2Payload(dict(params))

    @property
    def args(self):
        return self.payload.data

    @property
    def form(self):
        return {}


class _JsonBody(JsonPayload):
    @property
    def data(self):
        # The views have refused a body that is not a JSON object before authlib reads it.
        try:
            return untrusted_json.request_object()
        except untrusted_json.UntrustedJsonError:
            return {}


class GatewayJsonRequest(JsonRequest):
    def __init__(self, issuer: str) -> None:
        super().__init__(flask_request.method, issuer + flask_request.path, flask_request.headers)
        self.payload = _JsonBody()
