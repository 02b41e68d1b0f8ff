"""/health reports whether Redis answers, and the service recovers when Redis comes back."""

from tests.harness.oauthflow import api


def test_health_follows_redis(auth_factory, redis_factory):
    redis = redis_factory()
    service = auth_factory(redis_url=redis.url)
    with api(service) as http:
        assert http.get("/health").json() == {"status": "ok"}
    redis.stop()
    with api(service) as http:
        down = http.get("/health")
        assert down.status_code == 503
        assert down.json() == {"status": "unavailable"}
        # Every endpoint that needs Redis says so: 503 with Retry-After, in the shape its clients read.
        register = http.post("/register", json={"redirect_uris": ["http://127.0.0.1/cb"]})
        token = http.post("/token", data={"grant_type": "refresh_token", "refresh_token": "x", "client_id": "c"})
        for response in (register, token):
            assert response.status_code == 503, response.text
            assert response.headers["retry-after"] == "5"
            assert response.json()["error"] == "temporarily_unavailable"
        page = http.get("/authorize", params={"client_id": "c", "response_type": "code"})
        assert page.status_code == 503
        assert page.headers["content-type"].startswith("text/html")
        assert "try again shortly" in page.text
    redis.start()
    with api(service) as http:
        assert http.get("/health").status_code == 200
        assert http.post("/register", json={"redirect_uris": ["http://127.0.0.1/cb"]}).status_code == 201
