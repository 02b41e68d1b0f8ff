"""What the READMEs promise about protocol revisions is one statement, and the code keeps it."""

from __future__ import annotations

import re
from pathlib import Path

from mcp_types.version import KNOWN_PROTOCOL_VERSIONS

REPO = Path(__file__).resolve().parents[2]
READMES = ("README.md", "services/auth/README.md", "services/mcp-proxy/README.md")
# The first revision whose clients must send RFC 8707's `resource`, which the auth service requires.
FIRST_WITH_RESOURCE_INDICATORS = "2025-06-18"


def stated_revisions(readme: str) -> list[str]:
    text = " ".join((REPO / readme).read_text().split())
    found = re.findall(r"Supported MCP revisions: ([0-9, and-]+?)[.(]", text)
    assert len(found) == 1, f"{readme}: expected one 'Supported MCP revisions:' statement, found {found}"
    return re.findall(r"\d{4}-\d{2}-\d{2}", found[0])


def test_every_readme_states_the_same_supported_revisions():
    statements = {readme: stated_revisions(readme) for readme in READMES}
    assert len({tuple(revisions) for revisions in statements.values()}) == 1, statements


def test_the_supported_revisions_are_those_the_sdk_knows_from_resource_indicators_on():
    known = list(KNOWN_PROTOCOL_VERSIONS)
    expected = known[known.index(FIRST_WITH_RESOURCE_INDICATORS) :]
    assert stated_revisions("README.md") == expected
