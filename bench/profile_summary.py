"""A py-spy profile in numbers: the top functions by own time and each package's share, for the benches
that profile (bridge_roundtrip.py, whole_path.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def area(frame: str) -> str:
    """The package a py-spy frame belongs to (py-spy names a file relative to its entry of sys.path): the
    bridge's and the auth service's by module, the standard library as `stdlib`."""
    path = frame.rsplit("(", 1)[-1].rsplit(":", 1)[0]
    for package in ("mcp_gateway_proxy/", "mcp_gateway_auth/"):
        if package in path:
            return package[:-1] + "." + path.split(package)[1].split(".py")[0]
    if "site-packages/" in path:
        path = path.split("site-packages/")[1]
    top = path.split("/")[0]
    if "/" not in path or top in {"concurrent", "asyncio", "email", "http", "json", "logging", "urllib"}:
        return "stdlib"
    return top


def summary(raw: list[Path], top: int = 30) -> dict[str, Any]:
    """Own-time top entries and the inclusive share of each package, over py-spy's raw output files."""
    own: dict[str, int] = {}
    own_by_area: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    for path in raw:
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
            if not frames:
                continue
            total += int(count)
            leaf = frames[-1].split(" (")[0] + " (" + frames[-1].split("/")[-1]
            own[leaf] = own.get(leaf, 0) + int(count)
            own_by_area[area(frames[-1])] = own_by_area.get(area(frames[-1]), 0) + int(count)
            for package in {area(f) for f in frames}:
                inclusive[package] = inclusive.get(package, 0) + int(count)
    leaders = sorted(own.items(), key=lambda kv: -kv[1])[:top]
    return {
        "samples": total,
        "own_top": {k: round(v / total, 3) for k, v in leaders},
        "own_by_area": {k: round(v / total, 3) for k, v in sorted(own_by_area.items(), key=lambda kv: -kv[1])},
        "inclusive_by_area": {k: round(v / total, 3) for k, v in sorted(inclusive.items(), key=lambda kv: -kv[1])},
    }
