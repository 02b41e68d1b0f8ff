"""Command lines of the real stdio MCP servers the tests use (PyPI and npm, installed by .ci/run)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
NODE_BIN = REPO / "node_modules" / ".bin"

# name -> (kind, executable); PyPI servers live next to this interpreter, npm ones in node_modules.
SERVERS: dict[str, tuple[str, str]] = {
    "time": ("pypi", "mcp-server-time"),
    "fetch": ("pypi", "mcp-server-fetch"),
    "memory": ("npm", "mcp-server-memory"),
    "everything": ("npm", "mcp-server-everything"),
}


class ServerNotInstalled(RuntimeError):
    pass


def mcp_server_argv(name: str) -> list[str]:
    """argv that runs the named real MCP server on stdio."""
    try:
        kind, executable = SERVERS[name]
    except KeyError:
        raise ValueError(f"unknown MCP server {name!r}; known: {sorted(SERVERS)}") from None
    if kind == "pypi":
        path = Path(sys.executable).parent / executable
        found = str(path) if path.exists() else shutil.which(executable)
        hint = "pip install -r requirements.txt"
    else:
        path = NODE_BIN / executable
        found = str(path) if path.exists() else None
        hint = "npm ci (in the repository root)"
    if found is None:
        raise ServerNotInstalled(f"MCP server {name!r} ({executable}) is not installed: {hint}")
    argv = [found]
    if name == "everything":
        argv.append("stdio")
    return argv
