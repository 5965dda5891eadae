"""The loop's jobs (training, prediction, comparison, model export) run in
:class:`gui.jobs.Worker` threads, the one protocol for long work in the window (see
``gui/jobs.py``): ``job(emit, stop_event) -> result``, the engine's callback and stop flag,
everything back as queued signals. What is the loop's own here is how many threads torch may
take in such a job.
"""

from __future__ import annotations

import os

from gui.jobs import Emit, Job, Worker

__all__ = ["Emit", "Job", "Worker", "training_threads", "usable_cores"]


def usable_cores() -> int:
    """Cores this process may run on (a container or taskset may allow fewer than exist)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # macOS and Windows have no affinity call
        return max(1, os.cpu_count() or 1)


def training_threads() -> int:
    """Threads torch may use in a job: all cores but one, which stays with the GUI thread."""
    return max(1, usable_cores() - 1)
