"""Which torch device training and prediction run on, how it is named to the user, and how many
CPU threads torch takes. The window asks here (in a worker) instead of importing torch itself.

torch is imported inside the functions: importing this module costs nothing.
"""

from __future__ import annotations

import os

from engine.errors import UserError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def _mps_available(torch) -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(name: str | None = "auto"):
    """``auto`` | ``cpu`` | ``cuda`` | ``cuda:N`` | ``mps`` -> ``torch.device``.

    ``auto`` takes CUDA, then Apple MPS, then the CPU. Asking for a device this machine does not
    have is a :class:`UserError`, never a silent fall back: a user who typed ``cuda`` expects the
    GPU and should learn at once that it is not seen.
    """
    import torch

    name = (name or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if _mps_available(torch):
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise UserError(
                "CUDA was asked for but no CUDA GPU is available (driver missing, or a CPU-only "
                "torch); use --device auto or --device cpu")
        index = torch.cuda.current_device()
        if name.startswith("cuda:"):
            try:
                index = int(name.split(":", 1)[1])
            except ValueError:
                raise UserError(f"unknown device {name!r}; choose one of: "
                                f"{', '.join(DEVICE_CHOICES)}, cuda:N") from None
            if not 0 <= index < torch.cuda.device_count():
                raise UserError(f"device {name!r} does not exist: this machine has "
                                f"{torch.cuda.device_count()} CUDA GPU(s)")
        return torch.device("cuda", index)
    if name == "mps":
        if not _mps_available(torch):
            raise UserError("Apple MPS was asked for but is not available on this machine; "
                            "use --device auto or --device cpu")
        return torch.device("mps")
    raise UserError(f"unknown device {name!r}; choose one of: {', '.join(DEVICE_CHOICES)}, cuda:N")


def check_device_name(name: str | None) -> None:
    """Reject a misspelt device without importing torch or touching the hardware."""
    name = (name or "auto").strip().lower()
    if name in DEVICE_CHOICES:
        return
    if name.startswith("cuda:") and name[5:].isdigit():
        return
    raise UserError(f"unknown device {name!r}; choose one of: {', '.join(DEVICE_CHOICES)}, cuda:N")


def device_name(device) -> str:
    """A human name: "NVIDIA GeForce RTX 4090 (cuda:0)", "Apple GPU (mps)", "CPU, 8 threads"."""
    import torch

    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"{torch.cuda.get_device_name(index)} (cuda:{index})"
    if device.type == "mps":
        return "Apple GPU (mps)"
    threads = torch.get_num_threads()
    return f"CPU, {threads} thread{'' if threads == 1 else 's'}"


def thread_count(requested: int | None) -> int | None:
    """Intra-op CPU threads for training: ``MASKLOOP_TORCH_THREADS`` wins, then ``requested``.

    The environment wins because it is the outermost setting: an operator (or CI on a shared
    machine) sets it to keep one process from taking every core, whatever the caller asked.
    """
    env = os.environ.get("MASKLOOP_TORCH_THREADS", "").strip()
    if env:
        try:
            value = int(env)
        except ValueError:
            raise UserError(f"MASKLOOP_TORCH_THREADS must be a whole number, not {env!r}") from None
        if value >= 1:
            return value
    if requested is not None and requested >= 1:
        return int(requested)
    return None


def list_devices() -> list[tuple[str, str]]:
    """``(device, label)`` for every device this machine can train on, "auto" first (its label
    names the GPU it would take). Imports torch: call it from a worker thread."""
    import torch

    devices = [("auto", "Automatic (GPU when there is one)"), ("cpu", "CPU")]
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            devices.append((f"cuda:{i}", f"GPU {i}: {torch.cuda.get_device_name(i)}"))
        devices[0] = ("auto", f"Automatic ({torch.cuda.get_device_name(0)})")
    if _mps_available(torch):
        devices.append(("mps", "Apple GPU (MPS)"))
    return devices


def preload() -> None:
    """Import torch and torch._dynamo (which the first optimizer built imports): the seconds a
    window can pay in a background thread before the first training or prediction."""
    import torch  # noqa: F401
    import torch._dynamo  # noqa: F401


def set_threads(count: int) -> None:
    """Intra-op CPU threads torch may use in this process (a worker leaves the GUI a core)."""
    import torch

    torch.set_num_threads(max(1, int(count)))


def is_out_of_memory(error: BaseException | str) -> bool:
    """Whether an exception (or the message of one, as a worker reports it) is torch running out
    of device memory, which the trainer retries with a smaller batch and the window explains."""
    if isinstance(error, BaseException):
        # By name, so that asking does not import torch (torch.OutOfMemoryError, or
        # torch.cuda.OutOfMemoryError in older releases).
        if any(cls.__name__ == "OutOfMemoryError" for cls in type(error).__mro__):
            return True
        return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()
    text = error.lower()  # a worker's message may carry the class name instead
    return "out of memory" in text or "outofmemory" in text
