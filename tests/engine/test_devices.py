"""engine.devices: what the window asks instead of importing torch."""

from __future__ import annotations

from engine.devices import is_out_of_memory, list_devices


def test_out_of_memory_is_told_from_an_exception_or_a_worker_message():
    import torch

    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"))
    assert is_out_of_memory(RuntimeError("CUDA error: out of memory"))
    assert not is_out_of_memory(ValueError("out of memory"))  # not torch's
    assert is_out_of_memory("torch.OutOfMemoryError: Tried to allocate 2 GiB")
    assert not is_out_of_memory("the image holds only NaN values")


def test_devices_start_with_auto_and_the_cpu():
    devices = list_devices()
    assert devices[0][0] == "auto" and ("cpu", "CPU") in devices
