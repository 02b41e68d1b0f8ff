"""The end every benchmark shares: the load average after the run, the figures as JSON under
bench/results/, and a line that says how loaded the machine was (figures scale with it)."""

from __future__ import annotations

import json
import os
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def write_results(name: str, results: dict) -> Path:
    """Record the load after the run, write results to bench/results/<name>.json, print the load."""
    results["load_after"] = os.getloadavg()[0]
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(results, indent=2))
    print(f"load average {results['load_before']:.1f} before, {results['load_after']:.1f} after")
    return path
