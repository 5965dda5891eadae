"""Worker jobs that load or ask the engine before the first training: run in a
:class:`~gui.jobs.Worker` thread, so the window never waits for torch's import."""

from __future__ import annotations

# Seconds after the window opens before torch is loaded in the background; 0 (or the
# environment variable MASKLOOP_NO_WARMUP=1) leaves it to the first training or prediction.
WARM_UP_DELAY_MS = 1500


def warm_up(emit, stop) -> bool:
    """Worker job: load what the first training or prediction needs, while the user looks.

    Importing torch and torchvision takes 6 to 8 s on a laptop, and the first optimizer that
    is built imports torch._dynamo (seconds more); paid here, Train, Live and the first
    prediction answer seconds sooner. Imports only: no thread of torch's starts, nothing is
    allocated on a GPU."""
    from engine.devices import preload

    preload()
    import engine.inference  # noqa: F401
    import engine.models  # noqa: F401
    import engine.training.live  # noqa: F401
    import engine.training.pixel_stage  # noqa: F401
    return True


def probe_devices(emit, stop) -> dict:
    """Worker job: the devices this machine can train on and the registered models.

    Run on demand (Advanced opened, or before the first training) because it imports torch."""
    from engine.devices import list_devices
    from engine.models import available_models

    return {"devices": list_devices(), "models": available_models()}
