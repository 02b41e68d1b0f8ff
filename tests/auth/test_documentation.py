"""Every AUTH_* variable the service reads is documented in its README and env.example."""

import re
from pathlib import Path

AUTH = Path(__file__).resolve().parents[2] / "services" / "auth"


def test_every_variable_is_documented():
    sources = (AUTH / "src" / "mcp_gateway_auth" / "config.py").read_text() + (AUTH / "gunicorn.conf.py").read_text()
    # Whole names only: a prefix such as AUTH_TEST_ is not a variable.
    used = set(re.findall(r"\bAUTH_[A-Z_]*[A-Z]\b", sources))
    readme = (AUTH / "README.md").read_text()
    example = (AUTH / "env.example").read_text()
    assert used
    assert not {v for v in used if f"`{v}`" not in readme}
    assert not {v for v in used if f"{v}=" not in example}
