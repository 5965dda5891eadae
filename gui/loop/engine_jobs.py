"""Worker jobs that load or ask the engine before the first training: run in a
:class:`~gui.jobs.Worker` thread, so the window never waits for torch's import.

Loading the engine also settles Python's cyclic garbage collector (:func:`load_engine`). A full
collection walks every object the process holds with the GIL held, so the window's thread
waits for it whichever thread triggered it. torch with torch._dynamo and sympy leaves about a
million objects, and a full collection then takes 50 to 190 ms on a 2-core laptop, longer as
the imports go on (measured with ``gc.callbacks`` in the window: the largest pauses of the
event loop while live training, and during the warm-up import, were these collections, seen
from outside as X pings answered 150 to 210 ms late). So the engine is imported with the
collector paused, and what the import made is then moved to the permanent generation
(``gc.freeze``), which collections skip: later full collections walk only the objects made
since, a few milliseconds' worth.
"""

from __future__ import annotations

import gc
import threading

# Seconds after the window opens before torch is loaded in the background; 0 (or the
# environment variable MASKLOOP_NO_WARMUP=1) leaves it to the first training or prediction.
WARM_UP_DELAY_MS = 1500

_load_lock = threading.Lock()
_loaded = False


def load_engine() -> None:
    """Import what training and prediction need, once per process, then freeze the collector's
    view of it (see the module's docstring). Every job that needs torch calls it first, so the
    freeze happens whether the warm-up ran (it usually has: then this returns at once), was
    turned off, or is still importing in another thread (then this waits for it).

    The import's own cyclic garbage is frozen with it, never freed: tens of objects in the
    measurements, against a full collection first, which would be the very pause avoided."""
    global _loaded
    with _load_lock:
        if _loaded:
            return
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            from engine.devices import preload

            preload()
            import engine.inference  # noqa: F401
            import engine.models  # noqa: F401
            import engine.training.live  # noqa: F401
            import engine.training.pixel_stage  # noqa: F401
        finally:
            if was_enabled:
                gc.enable()
        gc.freeze()
        _loaded = True


def warm_up(emit, stop) -> bool:
    """Worker job: load what the first training or prediction needs, while the user looks.

    Importing torch and torchvision takes 6 to 8 s on a laptop, and the first optimizer that
    is built imports torch._dynamo (seconds more); paid here, Train, Live and the first
    prediction answer seconds sooner. Imports only: no thread of torch's starts, nothing is
    allocated on a GPU."""
    load_engine()
    return True


def probe_devices(emit, stop) -> dict:
    """Worker job: the devices this machine can train on and the registered models.

    Run on demand (Advanced opened, or before the first training) because it imports torch."""
    load_engine()
    from engine.devices import list_devices
    from engine.models import available_models

    return {"devices": list_devices(), "models": available_models()}
