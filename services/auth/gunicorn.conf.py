"""Gunicorn settings for the auth service: loopback bind, JSON logs on stderr.

Run as: gunicorn -c services/auth/gunicorn.conf.py 'mcp_gateway_auth:create_app()'
"""

import os

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
