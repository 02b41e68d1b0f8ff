"""The service refuses to start with a clear message when a setting is missing or malformed."""

import json

import pytest
from mcp_gateway_auth import ConfigError, create_app

from tests.harness.auth import AuthService, write_rsa_key


@pytest.fixture
def good_env(tmp_path):
    return {
        "AUTH_ISSUER": "https://auth.example.test",
        "AUTH_REDIS_URL": "redis://:pw@127.0.0.1:1/0",
        "AUTH_GITHUB_CLIENT_ID": "id",
        "AUTH_GITHUB_CLIENT_SECRET": "secret",
        "AUTH_ALLOWED_GITHUB_USERS": "octocat",
        "AUTH_SIGNING_KEYS": str(write_rsa_key(tmp_path / "k.pem")),
        "AUTH_SECRET_KEY": "s" * 40,
        "AUTH_RESOURCES": json.dumps([{"name": "time", "resource": "https://time.example.test/mcp"}]),
    }


def test_a_good_configuration_builds_the_app(good_env, monkeypatch):
    for key in list(__import__("os").environ):
        if key.startswith("AUTH_"):
            monkeypatch.delenv(key)
    assert create_app(good_env).config["SETTINGS"].issuer == "https://auth.example.test"


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("AUTH_ISSUER", "", "AUTH_ISSUER"),
        ("AUTH_ISSUER", "http://auth.example.test", "https"),
        ("AUTH_ISSUER", "https://auth.example.test/", "canonical"),
        ("AUTH_ISSUER", "https://Auth.Example.test", "canonical"),
        ("AUTH_ISSUER", "https://auth.example.test:443", "canonical"),
        ("AUTH_REDIS_URL", "", "AUTH_REDIS_URL"),
        ("AUTH_REDIS_URL", "http://localhost", "AUTH_REDIS_URL"),
        ("AUTH_GITHUB_CLIENT_ID", "", "AUTH_GITHUB_CLIENT_ID"),
        ("AUTH_GITHUB_CLIENT_SECRET", "", "AUTH_GITHUB_CLIENT_SECRET"),
        ("AUTH_SECRET_KEY", "short", "AUTH_SECRET_KEY"),
        ("AUTH_SIGNING_KEYS", "/nonexistent.pem", "AUTH_SIGNING_KEYS"),
        ("AUTH_RESOURCES", "not json", "AUTH_RESOURCES"),
        ("AUTH_RESOURCES", "[]", "AUTH_RESOURCES"),
        ("AUTH_RESOURCES", '[{"name": "t", "resource": "https://t.example.test/mcp/"}]', "trailing slash"),
        ("AUTH_RESOURCES", '[{"name": "t", "resource": "http://t.example.test/mcp"}]', "https"),
        ("AUTH_RESOURCES", '[{"name": "t", "resource": "https://t.example.test"}]', "path"),
        ("AUTH_ALLOWED_GITHUB_USERS", " , ", "AUTH_ALLOWED_GITHUB_USERS"),
        ("AUTH_CODE_TTL", "3600", "AUTH_CODE_TTL"),
        ("AUTH_ACCESS_TOKEN_TTL", "soon", "AUTH_ACCESS_TOKEN_TTL"),
        ("AUTH_RATELIMIT_TOKEN", "lots", "AUTH_RATELIMIT_TOKEN"),
        ("AUTH_REFRESH_REUSE_GRACE", "30s", "AUTH_REFRESH_REUSE_GRACE"),
        ("AUTH_REFRESH_REUSE_GRACE", "-1", "AUTH_REFRESH_REUSE_GRACE"),
        ("AUTH_REFRESH_REUSE_GRACE", "3600", "AUTH_REFRESH_REUSE_GRACE"),
        ("AUTH_BACKUP_AGE_RECIPIENTS", "ssh-ed25519 AAAA", r"'ssh-ed25\.\.\.' is not an age public key"),
        # A secret key pasted by mistake is refused without being echoed whole.
        ("AUTH_BACKUP_AGE_RECIPIENTS", "AGE-SECRET-KEY-1QQQQ", r"'AGE-SECR\.\.\.' is not an age public key"),
    ],
)
def test_a_bad_setting_is_named_in_the_error(good_env, key, value, message):
    env = dict(good_env, **{key: value})
    with pytest.raises(ConfigError, match=message):
        create_app(env)


def test_a_non_rsa_or_garbage_key_file_is_refused(good_env, tmp_path):
    bad = tmp_path / "bad.pem"
    bad.write_text("-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n")
    with pytest.raises(ConfigError, match="AUTH_SIGNING_KEYS"):
        create_app(dict(good_env, AUTH_SIGNING_KEYS=str(bad)))


def test_gunicorn_exits_with_the_message_instead_of_serving(tmp_path, redis_server, github_stub):
    service = AuthService(
        tmp_path,
        issuer="https://auth.example.test/",
        redis_url=redis_server.url,
        resources=[],
        github_url=github_stub.url,
        github_api_url=github_stub.api_url,
        github_client_id="x",
        github_client_secret="y",
    )
    with pytest.raises(RuntimeError):
        service.start(timeout=20)
    service.stop()
    assert "AUTH_ISSUER" in service.log_path.read_text()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"AUTH_TEST_CIMD_ALLOWED_HOSTS": "localhost"}, "AUTH_TEST_CIMD_ALLOWED_HOSTS: a test-only setting"),
        ({"AUTH_TEST_SOMETHING_NEW": "1"}, "AUTH_TEST_SOMETHING_NEW: a test-only setting"),
        ({"AUTH_TEST_MODE": "0", "AUTH_TEST_CIMD_ALLOWED_HOSTS": "localhost"}, "AUTH_TEST_MODE: "),
    ],
    ids=["cimd-loopback-allowance", "any-test-name", "test-mode-not-1"],
)
def test_a_test_only_setting_is_refused_outside_test_mode(good_env, settings, message):
    """Attack: an AUTH_TEST_* setting slipped into production (through the role's auth_extra_env,
    say) would switch off a guard, here the SSRF guard of metadata-document fetches."""
    with pytest.raises(ConfigError, match=message):
        create_app(dict(good_env, **settings))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"AUTH_TEST_CIMD_ALLOWED_HOSTS": "127.0.0.1"}, "AUTH_TEST_CIMD_ALLOWED_HOSTS: name hosts"),
        ({"AUTH_TEST_CIMD_ALOWED_HOSTS": "localhost"}, "AUTH_TEST_CIMD_ALOWED_HOSTS: not a test setting"),
    ],
)
def test_test_settings_are_checked_in_test_mode_too(good_env, settings, message):
    with pytest.raises(ConfigError, match=message):
        create_app(dict(good_env, AUTH_TEST_MODE="1", **settings))


def test_in_test_mode_the_allowance_applies(good_env):
    app = create_app(dict(good_env, AUTH_TEST_MODE="1", AUTH_TEST_CIMD_ALLOWED_HOSTS="localhost"))
    assert app.config["SETTINGS"].cimd_test_allowed_hosts == {"localhost"}


def test_gunicorn_refuses_a_test_only_setting_without_test_mode(tmp_path, redis_server, github_stub):
    service = AuthService(
        tmp_path,
        issuer="https://auth.example.test",
        redis_url=redis_server.url,
        resources=[{"name": "time", "resource": "https://time.example.test/mcp"}],
        github_url=github_stub.url,
        github_api_url=github_stub.api_url,
        github_client_id="x",
        github_client_secret="y",
        env={"AUTH_TEST_CIMD_ALLOWED_HOSTS": "localhost"},
    )
    with pytest.raises(RuntimeError):
        service.start(timeout=20)
    service.stop()
    log = service.log_path.read_text()
    assert "AUTH_TEST_CIMD_ALLOWED_HOSTS: a test-only setting" in log
    assert not service.running()


def test_a_service_in_test_mode_says_so_loudly_at_start(cimd_service):
    lines = [json.loads(line) for line in cimd_service.log_path.read_text().splitlines() if line.startswith("{")]
    warnings = [line for line in lines if line.get("event") == "test_mode"]
    assert warnings and all(line["level"] == "warning" for line in warnings)
    assert "AUTH_TEST_CIMD_ALLOWED_HOSTS" in warnings[0]["settings"]
    assert "never in production" in warnings[0]["message"]


def oidc(good_env: dict, **changes: str) -> dict:
    env = {k: v for k, v in good_env.items() if not k.startswith(("AUTH_GITHUB_", "AUTH_ALLOWED_GITHUB"))}
    env.update(
        {
            "AUTH_IDP": "oidc",
            "AUTH_OIDC_ISSUER": "https://login.example.test/realms/staff",
            "AUTH_OIDC_CLIENT_ID": "mcp-gateway",
            "AUTH_OIDC_CLIENT_SECRET": "secret",
            "AUTH_ALLOWED_USERS": "@example.test, group:mcp-users, alice@elsewhere.test",
        }
    )
    env.update(changes)
    return env


def test_an_openid_connect_configuration_needs_no_github_settings(good_env):
    settings = create_app(oidc(good_env)).config["SETTINGS"]
    assert settings.idp == "oidc" and settings.oidc_user_claim == "email"
    assert settings.allowed_users == {"@example.test", "group:mcp-users", "alice@elsewhere.test"}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"AUTH_IDP": "saml"}, "AUTH_IDP: 'saml'; expected github or oidc"),
        ({"AUTH_OIDC_ISSUER": ""}, "missing required setting.*AUTH_OIDC_ISSUER"),
        ({"AUTH_OIDC_CLIENT_SECRET": ""}, "missing required setting.*AUTH_OIDC_CLIENT_SECRET"),
        ({"AUTH_ALLOWED_USERS": ""}, "missing required setting.*AUTH_ALLOWED_USERS"),
        ({"AUTH_OIDC_ISSUER": "http://login.example.test"}, "AUTH_OIDC_ISSUER: .* https issuer URL"),
        ({"AUTH_OIDC_SCOPES": "email profile"}, "AUTH_OIDC_SCOPES: must include 'openid'"),
        ({"AUTH_OIDC_USER_CLAIM": "e mail"}, "AUTH_OIDC_USER_CLAIM: 'e mail' is not a claim name"),
        ({"AUTH_ALLOWED_USERS": "@"}, "names no domain or group"),
        ({"AUTH_ALLOWED_USERS": "group:"}, "names no domain or group"),
        ({"AUTH_ALLOWED_GITHUB_USERS": "octocat"}, "AUTH_ALLOWED_GITHUB_USERS: not read with AUTH_IDP=oidc"),
        ({"AUTH_OIDC_AUTHORIZATION_PARAMS": "access_type=offline"}, "AUTH_OIDC_AUTHORIZATION_PARAMS: not JSON"),
        ({"AUTH_OIDC_AUTHORIZATION_PARAMS": '["offline"]'}, "AUTH_OIDC_AUTHORIZATION_PARAMS: expected a JSON object"),
        ({"AUTH_OIDC_AUTHORIZATION_PARAMS": '{"access_type": true}'}, "the value of 'access_type' must be a string"),
        ({"AUTH_OIDC_AUTHORIZATION_PARAMS": '{"a b": "c"}'}, "'a b' is not a parameter name"),
        (
            {
                "AUTH_RESOURCES": json.dumps(
                    [{"name": "t", "resource": "https://t.example.test/mcp", "allowed_users": ["@"]}]
                )
            },
            r"AUTH_RESOURCES\[0\].allowed_users",
        ),
    ],
)
def test_a_bad_openid_connect_setting_is_named_in_the_error(good_env, changes, message):
    with pytest.raises(ConfigError, match=message):
        create_app(oidc(good_env, **changes))


def test_extra_authorization_parameters_are_read_for_the_provider(good_env):
    """Google sends the refresh token that re-checks a user at refresh only with access_type=offline."""
    params = '{"access_type": "offline", "prompt": "consent"}'
    settings = create_app(oidc(good_env, AUTH_OIDC_AUTHORIZATION_PARAMS=params)).config["SETTINGS"]
    assert settings.oidc_authorization_params == {"access_type": "offline", "prompt": "consent"}


# Attack (a careless or hostile inventory): an extra parameter must not replace what the sign-in's safety
# rests on, where the code goes, or the whole request.
@pytest.mark.parametrize(
    "name",
    [
        "state",
        "nonce",
        "code_challenge",
        "code_challenge_method",
        "redirect_uri",
        "client_id",
        "response_type",
        "response_mode",
        "scope",
        "request_uri",
        "Redirect_URI",
    ],
)
def test_an_extra_authorization_parameter_cannot_override_the_protocol(good_env, name):
    with pytest.raises(ConfigError, match=f"AUTH_OIDC_AUTHORIZATION_PARAMS: '{name}' is set by the service itself"):
        create_app(oidc(good_env, AUTH_OIDC_AUTHORIZATION_PARAMS=json.dumps({name: "x"})))


@pytest.mark.parametrize("entry", ["@example.test", "group:mcp-users"])
def test_domain_and_group_rules_need_an_openid_connect_provider(good_env, entry):
    """GitHub has no verified domain or group claim to match them against."""
    with pytest.raises(ConfigError, match=r"AUTH_ALLOWED_GITHUB_USERS: .* needs AUTH_IDP=oidc"):
        create_app({**good_env, "AUTH_ALLOWED_GITHUB_USERS": f"octocat,{entry}"})


SENTINEL_ENV = {
    "AUTH_REDIS_URL": "",
    "AUTH_REDIS_SENTINELS": "10.0.2.103:26379, 10.0.2.104:26379,10.0.2.105:26379",
    "AUTH_REDIS_SENTINEL_MASTER": "mcp-gateway",
    "AUTH_REDIS_PASSWORD": "redis-pw",
    "AUTH_REDIS_SENTINEL_PASSWORD": "sentinel-pw",
    "AUTH_REDIS_DURABLE_REPLICAS": "1",
}


def test_with_sentinels_no_redis_url_is_needed(good_env):
    settings = create_app(dict(good_env, **SENTINEL_ENV)).config["SETTINGS"]
    assert settings.redis_sentinels == (("10.0.2.103", 26379), ("10.0.2.104", 26379), ("10.0.2.105", 26379))
    assert settings.redis_durable_replicas == 1
    # Rate limits go to the same primary, with the Sentinels' own password.
    assert settings.limits_storage_uri.startswith("redis+sentinel://:redis-pw@10.0.2.103:26379,")
    assert settings.limits_storage_options["sentinel_kwargs"]["password"] == "sentinel-pw"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"AUTH_REDIS_URL": "redis://:pw@127.0.0.1:1/0"}, "give one"),
        ({"AUTH_REDIS_SENTINELS": "", "AUTH_REDIS_URL": ""}, r"AUTH_REDIS_URL \(or AUTH_REDIS_SENTINELS\)"),
        ({"AUTH_REDIS_SENTINELS": "10.0.2.103"}, "not host:port"),
        ({"AUTH_REDIS_SENTINELS": "10.0.2.103:0"}, "not host:port"),
        ({"AUTH_REDIS_SENTINELS": "10.0.2.103:26379,10.0.2.103:26379"}, "twice"),
        ({"AUTH_REDIS_SENTINEL_MASTER": "my master"}, "AUTH_REDIS_SENTINEL_MASTER"),
        ({"AUTH_REDIS_PASSWORD": ""}, "AUTH_REDIS_PASSWORD: required"),
        ({"AUTH_REDIS_SENTINEL_PASSWORD": ""}, "AUTH_REDIS_SENTINEL_PASSWORD: required"),
        ({"AUTH_REDIS_DURABLE_REPLICAS": "-1"}, "AUTH_REDIS_DURABLE_REPLICAS"),
        ({"AUTH_REDIS_DURABLE_TIMEOUT_MS": "60000"}, "AUTH_REDIS_DURABLE_TIMEOUT_MS"),
    ],
)
def test_a_bad_sentinel_setting_is_named_in_the_error(good_env, changes, message):
    with pytest.raises(ConfigError, match=message):
        create_app({**good_env, **SENTINEL_ENV, **changes})


def test_sentinel_settings_without_sentinels_are_refused(good_env):
    """A password meant for Sentinel mode, given to a service that reads AUTH_REDIS_URL, is a mistake."""
    with pytest.raises(ConfigError, match="AUTH_REDIS_PASSWORD: only read with AUTH_REDIS_SENTINELS"):
        create_app(dict(good_env, AUTH_REDIS_PASSWORD="pw"))
