"""Serve one stdio MCP server over Streamable HTTP to clients of every protocol revision."""

__version__ = "0.1.0"
