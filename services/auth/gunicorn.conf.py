"""Gunicorn settings for the auth service: loopback bind, JSON logs on stderr.

Run as: gunicorn -c services/auth/gunicorn.conf.py 'mcp_gateway_auth:create_app()'
"""

import os
import shutil
import sys
import tempfile

bind = os.environ.get("AUTH_BIND", "127.0.0.1:9000")
workers = int(os.environ.get("AUTH_WORKERS", "2"))
threads = int(os.environ.get("AUTH_THREADS", "4"))
worker_class = "gthread"
timeout = 30
graceful_timeout = 10
# Traefik is the only client; it sits on the same host.
forwarded_allow_ips = os.environ.get("AUTH_FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
# Request-line and header limits: nothing legitimate comes near them.
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 8190
# The control socket would default to ~/.gunicorn/gunicorn.ctl, shared by every gunicorn of the user.
control_socket_disable = True
accesslog = "-"
errorlog = "-"
# One JSON object per line in the schema of LOGS.md (repository root): the formatter and the access
# lines (built as a dict, so numbers stay numbers) live in the package.
logger_class = "mcp_gateway_auth.logs.GunicornLogger"
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "mcp_gateway_auth.logs.JsonFormatter"}},
    "handlers": {
        "stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"},
    },
    "root": {"level": os.environ.get("AUTH_LOG_LEVEL", "INFO"), "handlers": ["stderr"]},
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": ["stderr"], "propagate": False},
        "gunicorn.access": {"level": "INFO", "handlers": ["stderr"], "propagate": False},
    },
}

# /metrics counts what every worker did: prometheus_client's multiprocess mode keeps each worker's
# counters in a file of this directory and adds them up at each scrape. The variable must be set
# before a worker imports prometheus_client. The systemd unit provides a private directory
# (RuntimeDirectory, new at every start); run by hand, a temporary one is made here and removed at exit.
_metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
if not _metrics_dir:
    _metrics_dir = tempfile.mkdtemp(prefix="mcp-gateway-auth-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _metrics_dir
    # In the environment, so that a reload (SIGHUP reads this file again) still knows it is ours.
    os.environ["MCPGW_AUTH_TEMPORARY_METRICS_DIR"] = _metrics_dir
# Before gunicorn loads the logger class, which imports the package and so creates the counters.
os.makedirs(_metrics_dir, mode=0o700, exist_ok=True)


# How long a worker thread may hold the GIL while another waits for it (Python's default: 5 ms). A
# thread returning from a socket call (the answer sent, Redis's reply read) waited up to that long
# behind one running Flask code: py-spy put most of a loaded /verify's time in `sendall`. Handing
# over sooner measured (bench/auth_verify.py, 16 connections, medians of 5) 1.7x the requests per
# second without the verify cache and 1.2x with it.
GIL_SWITCH_INTERVAL = 0.0002


def post_worker_init(worker) -> None:
    sys.setswitchinterval(GIL_SWITCH_INTERVAL)


def on_starting(server) -> None:
    """Files of an earlier run in the same directory would be added to this run's counts."""
    for entry in os.scandir(_metrics_dir):
        if entry.is_file() and entry.name.endswith(".db"):
            os.unlink(entry.path)


def child_exit(server, worker) -> None:
    """A dead worker's counters stay in the sums; its live gauges, if any, must not."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid, _metrics_dir)


def on_exit(server) -> None:
    if os.environ.get("MCPGW_AUTH_TEMPORARY_METRICS_DIR") == _metrics_dir:
        shutil.rmtree(_metrics_dir, ignore_errors=True)
