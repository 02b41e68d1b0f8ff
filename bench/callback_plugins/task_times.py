"""Where an ansible-playbook run spends its time: the wall time of every task, longest first.

ansible.posix's profile_tasks does this, but that collection is not installed here. Enable with
    ANSIBLE_CALLBACK_PLUGINS=bench/callback_plugins ANSIBLE_CALLBACKS_ENABLED=task_times
and the summary follows the play recap; TASK_TIMES_FILE=path also writes it there as JSON lines
(one per task: playbook, task, role, seconds, hosts changed), appended, so a molecule step run by
several playbooks lands in one file. TASK_TIMES_TOP sets how many tasks are printed (default 25).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: task_times
type: aggregate
short_description: wall time per task, longest first
description: Prints (and with TASK_TIMES_FILE writes as JSON lines) the wall time of every task of the run.
requirements: [enable in the configuration]
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "task_times"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        self._playbook = ""
        self._started = time.monotonic()
        # (task label, start) of the task running now; the linear strategy runs one at a time.
        self._current: tuple[str, float] | None = None
        self._times: dict[str, dict[str, Any]] = {}
        self._changed: dict[str, int] = {}

    def v2_playbook_on_start(self, playbook: Any) -> None:
        self._playbook = os.path.basename(playbook._file_name)

    def _start(self, task: Any) -> None:
        self._stop()
        role = task._role.get_name() if task._role else ""
        label = f"{role} : {task.get_name()}" if role else task.get_name()
        self._current = (label, time.monotonic())

    def _stop(self) -> None:
        if self._current is None:
            return
        label, began = self._current
        entry = self._times.setdefault(label, {"task": label, "seconds": 0.0, "runs": 0, "changed": 0})
        entry["seconds"] += time.monotonic() - began
        entry["runs"] += 1
        self._current = None

    def v2_playbook_on_task_start(self, task: Any, is_conditional: bool) -> None:
        self._start(task)

    def v2_playbook_on_handler_task_start(self, task: Any) -> None:
        self._start(task)

    def v2_runner_on_ok(self, result: Any) -> None:
        if result._result.get("changed") and self._current:
            self._times.setdefault(
                self._current[0], {"task": self._current[0], "seconds": 0.0, "runs": 0, "changed": 0}
            )["changed"] += 1

    def v2_playbook_on_stats(self, stats: Any) -> None:
        self._stop()
        total = time.monotonic() - self._started
        ranked = sorted(self._times.values(), key=lambda e: e["seconds"], reverse=True)
        top = int(os.environ.get("TASK_TIMES_TOP", "25"))
        self._display.display(f"\nTASK TIMES {self._playbook}: {total:.1f} s in all, {len(ranked)} tasks")
        for entry in ranked[:top]:
            runs = f" x{entry['runs']}" if entry["runs"] > 1 else ""
            self._display.display(f"{entry['seconds']:8.2f} s  {entry['task']}{runs}")
        path = os.environ.get("TASK_TIMES_FILE")
        if path:
            with open(path, "a", encoding="utf-8") as out:
                for entry in ranked:
                    out.write(json.dumps({"playbook": self._playbook, "total": round(total, 2), **entry}) + "\n")
