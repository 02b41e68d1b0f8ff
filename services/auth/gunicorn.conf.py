"""Gunicorn settings for the auth service: loopback bind, JSON logs on stderr.

Run as: gunicorn -c services/auth/gunicorn.conf.py 'mcp_gateway_auth:create_app()'
"""

import json
import logging
import os
import time

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
# One JSON object per line; gunicorn's access-log atoms are substituted into the values.
access_log_format = json.dumps(
    {
        "type": "access",
        "remote": "%(h)s",
        "method": "%(m)s",
        "path": "%(U)s",
        "status": "%(s)s",
        "bytes": "%(B)s",
        "duration_ms": "%(M)s",
        "agent": "%(a)s",
    }
)


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if message.startswith("{") and message.endswith("}"):
            try:
                payload = json.loads(message)
            except ValueError:
                payload = {"message": message}
        else:
            payload = {"message": message}
        payload.setdefault("level", record.levelname.lower())
        payload.setdefault("logger", record.name)
        payload.setdefault("time", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created)))
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload)


logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": _JsonFormatter}},
    "handlers": {
        "stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"},
    },
    "root": {"level": os.environ.get("AUTH_LOG_LEVEL", "INFO"), "handlers": ["stderr"]},
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": ["stderr"], "propagate": False},
        "gunicorn.access": {"level": "INFO", "handlers": ["stderr"], "propagate": False},
    },
}
