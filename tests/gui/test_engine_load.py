"""Loading the engine pauses the garbage collector and freezes what the import made, so that
later full collections (which hold the GIL, and so the window's thread) skip torch's objects."""

from __future__ import annotations

import gc
import sys

import pytest

import engine.devices
from gui.loop import engine_jobs
from gui.loop.worker import Worker

_kept: list = []


@pytest.fixture
def fresh_load(monkeypatch):
    monkeypatch.setattr(engine_jobs, "_loaded", False)
    enabled = gc.isenabled()
    yield
    gc.unfreeze()  # back to the oldest generation: the rest of the suite collects as before
    _kept.clear()
    (gc.enable if enabled else gc.disable)()


def test_the_import_runs_with_the_collector_paused_and_its_objects_are_frozen(fresh_load, monkeypatch):
    seen = {}

    def preload():
        seen["enabled_during_import"] = gc.isenabled()
        seen["calls"] = seen.get("calls", 0) + 1
        _kept.extend({"i": i} for i in range(5000))  # what an import leaves behind

    monkeypatch.setattr(engine.devices, "preload", preload)
    gc.enable()
    gc.unfreeze()
    engine_jobs.load_engine()
    assert seen == {"enabled_during_import": False, "calls": 1}
    assert gc.isenabled()
    assert gc.get_freeze_count() >= 5000
    tracked = {id(o) for o in gc.get_objects()}
    assert not any(id(d) in tracked for d in _kept[:100])  # frozen: collections skip them

    engine_jobs.load_engine()  # once per process
    assert seen["calls"] == 1


def test_a_failed_import_leaves_the_collector_running_and_is_tried_again(fresh_load, monkeypatch):
    def broken():
        raise ImportError("libtorch_cpu.so: cannot open shared object file")

    monkeypatch.setattr(engine.devices, "preload", broken)
    gc.enable()
    gc.unfreeze()
    with pytest.raises(ImportError):
        engine_jobs.load_engine()
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0
    assert engine_jobs._loaded is False


def test_the_warm_up_job_loads_torch_and_freezes_it(fresh_load, qtbot):
    gc.unfreeze()
    worker = Worker(engine_jobs.warm_up, "warm-up")
    with qtbot.waitSignal(worker.done, timeout=120_000):
        with qtbot.waitSignal(worker.finished, timeout=120_000) as finished:
            worker.start()
    assert finished.args == [True]
    assert "torch" in sys.modules and "torch._dynamo" in sys.modules
    assert gc.get_freeze_count() > 100_000  # torch alone leaves hundreds of thousands
    assert gc.isenabled()
