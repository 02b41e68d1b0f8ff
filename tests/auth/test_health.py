"""/health reports whether Redis answers, and the service recovers when Redis comes back."""

from tests.auth.oauthflow import api


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
        assert http.post("/register", json={"redirect_uris": ["http://127.0.0.1/cb"]}).status_code >= 500
    redis.start()
    with api(service) as http:
        assert http.get("/health").status_code == 200
