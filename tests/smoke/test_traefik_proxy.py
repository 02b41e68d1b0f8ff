"""The real Traefik binary routes by the file-provider configuration a test writes."""

from __future__ import annotations

import sys

import httpx

from tests.harness.procs import ManagedProcess, free_port, group_alive


def test_traefik_routes_to_a_backend_and_picks_up_config_changes(traefik_factory, tmp_path):
    port = free_port()
    backend = ManagedProcess(
        "backend",
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(tmp_path)],
        log_dir=tmp_path,
    )
    (tmp_path / "hello.txt").write_text("hello from the backend\n")
    with backend.start().wait_for_port(port):
        proxy = traefik_factory(
            {
                "http": {
                    "routers": {
                        "files": {"rule": "Host(`files.test`)", "entryPoints": ["web"], "service": "files"},
                    },
                    "services": {"files": {"loadBalancer": {"servers": [{"url": f"http://127.0.0.1:{port}"}]}}},
                }
            }
        )
        ok = httpx.get(f"{proxy.http_url}/hello.txt", headers={"Host": "files.test"}, timeout=5)
        assert ok.status_code == 200
        assert ok.text == "hello from the backend\n"
        assert httpx.get(f"{proxy.http_url}/hello.txt", headers={"Host": "other.test"}, timeout=5).status_code == 404

        proxy.update(
            {
                "http": {
                    "routers": {
                        "moved": {"rule": "Host(`moved.test`)", "entryPoints": ["web"], "service": "files"},
                    },
                    "services": {"files": {"loadBalancer": {"servers": [{"url": f"http://127.0.0.1:{port}"}]}}},
                }
            }
        )
        moved = httpx.get(f"{proxy.http_url}/hello.txt", headers={"Host": "moved.test"}, timeout=5)
        assert moved.status_code == 200
        proxy.stop()
        assert not proxy.running()
    assert not group_alive(backend.pid)
