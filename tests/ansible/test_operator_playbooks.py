"""The operator's playbooks refuse bad input with a clear message before they touch a host.

Run against inventory.example's host on this machine (connection local): each case fails in the play's
first checks, so nothing reaches `mcp-gateway`. What they do on a real host, with a real client on the other
side, is molecule/operator's (tests/hosts/test_operator_playbooks.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness.playbook import REPO, run_playbook

# case: (playbook, extra variables, what the refusal says)
REFUSED: dict[str, tuple[str, dict[str, object], str]] = {
    "backup without an age recipient": (
        "backup.yml",
        {},
        "auth_backup_age_recipients is not set for gateway.example.com",
    ),
    "backup keeping no backup": (
        "backup.yml",
        {"auth_backup_age_recipients": ["age1example"], "backup_keep": 0},
        "backup_keep must be a whole number of at least 1, not 0",
    ),
    "revoke with no target": ("revoke.yml", {}, "give exactly one of -e client=CLIENT_ID, -e user=GITHUB_LOGIN"),
    "revoke with two targets": ("revoke.yml", {"client": "c1", "user": "octocat"}, "got client and user"),
    "users with neither ban nor unban": ("users.yml", {}, "give exactly one of -e ban=GITHUB_LOGIN"),
    "users with ban and unban": ("users.yml", {"ban": "octocat", "unban": "octocat"}, "got both"),
    "restore without a backup": ("restore.yml", {"age_identity": "/k"}, "name the backup: -e backup_file=PATH"),
    "restore without a key": ("restore.yml", {"backup_file": "/b"}, "name the age secret key that decrypts it"),
    "restore of a missing file": (
        "restore.yml",
        {"backup_file": "/nonexistent/backup.age", "age_identity": "/nonexistent/key.txt"},
        "/nonexistent/backup.age: no such file on the controller",
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_operator_playbook_refuses_bad_input_before_touching_the_host(case: str, tmp_path: Path) -> None:
    name, variables, message = REFUSED[case]
    result = run_playbook(REPO / "playbooks" / name, tmp_path, variables, timeout=180)
    out = " ".join(result.stdout.split())
    assert result.returncode != 0, out[-2000:]
    assert message in out, out[-3000:]
    assert "mcp-gateway" not in out.split("PLAY RECAP")[0].split(message)[-1]  # nothing ran after the check
