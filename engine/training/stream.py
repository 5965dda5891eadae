"""Batches of augmented crops, made on a background thread while the network computes.

Cutting, normalising and augmenting a batch is NumPy and small torch work that mostly releases
the GIL; doing it on a thread hides it behind the training step (on a GPU it would otherwise
take a good share of each step). Every crop's random numbers are derived from (seed, epoch,
position in the epoch), so batches do not depend on thread timing, batch size or process count.
"""

from __future__ import annotations

import queue
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from engine.training.augment import CropMaker
from engine.training.data import CropSampler, Example


@dataclass
class Batch:
    epoch: int
    index: int  # step within the epoch
    steps: int  # steps in this epoch
    images: "object"  # float32 B x C x S x S (pinned on CUDA)
    masks: "object"  # int64 B x S x S


class BatchSource(ABC):
    """What every batch stream shares: which crops a batch takes, their seeds, the producer
    threads and the iteration over :class:`Batch` from ``first_epoch`` on, until :meth:`close`.

    Batch ``g`` is step ``g % steps_per_epoch`` of epoch ``first_epoch + g // steps_per_epoch``;
    crop ``position`` of an epoch draws from the generator seeded ``[seed, epoch, position *
    world + rank, 13]``. A subclass makes a batch's host part in :meth:`_batch` (on a producer
    thread, or on the caller's without one) and finishes it on the caller's thread in
    :meth:`_finish`.
    """

    def __init__(self, examples: list[Example], sampler: CropSampler, maker: CropMaker,
                 batch_size: int, steps_per_epoch: int, first_epoch: int, seed: int,
                 rank: int = 0, world: int = 1):
        self.examples = examples
        self.sampler = sampler
        self.maker = maker
        self.batch_size = batch_size
        self.steps_per_epoch = steps_per_epoch
        self.first_epoch = first_epoch
        self.seed = seed
        self.rank, self.world = rank, world
        self._stop = threading.Event()
        self._next = 0
        self._inline_cache = _EpochCache()
        self._queues: list[queue.Queue] = []
        self._threads: list[threading.Thread] = []

    def _start(self, workers: int, depth: int, name: str) -> None:
        """``workers`` threads, thread ``w`` making batches ``w, w + workers, ...``; none: each
        batch is made when asked for, on the caller's thread."""
        self._queues = [queue.Queue(maxsize=depth) for _ in range(workers)]
        self._threads = [threading.Thread(target=self._produce, args=(w,), daemon=True,
                                          name=f"{name}-{w}") for w in range(workers)]
        for thread in self._threads:
            thread.start()

    # -- which crops, and their generators ------------------------------------------------------

    def _locate(self, g: int) -> tuple[int, int]:
        """(epoch, step within it) of batch ``g``."""
        return self.first_epoch + g // self.steps_per_epoch, g % self.steps_per_epoch

    def _samples(self, epoch: int) -> list:
        """This process's ``(image, y, x)`` crop centres of ``epoch``, ``steps_per_epoch *
        batch_size`` of them. ``sampler`` draws on ``examples``: under torchrun this process's
        own images (distributed.shard_images); keyed ``epoch * world + rank`` so that processes
        sharing an image (fewer images than processes) still draw apart."""
        return self.sampler.epoch(epoch * self.world + self.rank,
                                  self.steps_per_epoch * self.batch_size)

    def _crops(self, g: int, cache: "_EpochCache"):
        """(epoch, step, [(image, y, x, generator)] for each crop of batch ``g``)."""
        epoch, index = self._locate(g)
        if cache.epoch != epoch:
            cache.epoch, cache.samples = epoch, self._samples(epoch)
        start = index * self.batch_size
        crops = []
        for position in range(start, start + self.batch_size):
            i, y, x = cache.samples[position]
            rng = np.random.default_rng([self.seed, epoch, position * self.world + self.rank, 13])
            crops.append((i, y, x, rng))
        return epoch, index, crops

    # -- what a subclass makes ------------------------------------------------------------------

    @abstractmethod
    def _batch(self, g: int, cache: "_EpochCache"):
        """Batch ``g``'s host part: a :class:`Batch`, or what :meth:`_finish` turns into one."""

    def _finish(self, item) -> Batch:
        return item

    # -- threads and iteration ------------------------------------------------------------------

    def _put(self, q: queue.Queue, item) -> bool:
        while not self._stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self, worker: int) -> None:
        q = self._queues[worker]
        cache = _EpochCache()  # one per thread: the threads are at different batches
        g = worker
        try:
            while not self._stop.is_set():
                if not self._put(q, self._batch(g, cache)):
                    return
                g += len(self._queues)
        except BaseException as exc:  # handed to the consumer, raised there
            self._put(q, exc)

    def __iter__(self):
        return self

    def __next__(self) -> Batch:
        if self._stop.is_set():
            raise StopIteration
        if not self._queues:
            item = self._batch(self._next, self._inline_cache)
        else:
            q = self._queues[self._next % len(self._queues)]
            while True:
                try:
                    item = q.get(timeout=0.5)
                    break
                except queue.Empty:
                    if self._stop.is_set():
                        raise StopIteration from None
            if isinstance(item, BaseException):
                raise item
        self._next += 1
        return self._finish(item)

    def close(self) -> None:
        self._stop.set()
        for q in self._queues:  # unblock producers waiting on a full queue
            while True:
                try:
                    q.get_nowait()
                except queue.Empty:
                    break
        for thread in self._threads:
            thread.join(timeout=5)


class _EpochCache:
    """The crop list of the epoch a thread is in (drawing one costs a few milliseconds)."""

    def __init__(self):
        self.epoch: int | None = None
        self.samples: list = []


class BatchStream(BatchSource):
    """Batches made by :class:`CropMaker` on CPU threads.

    ``workers`` threads each make every ``workers``-th batch; batches come out in order. With
    ``workers=0`` each batch is made when asked for, on the caller's thread: on a CPU whose
    cores all compute the network, a producer thread would only preempt them.
    """

    def __init__(self, examples: list[Example], sampler: CropSampler, maker: CropMaker,
                 batch_size: int, steps_per_epoch: int, first_epoch: int, seed: int,
                 rank: int = 0, world: int = 1, pin: bool = False, workers: int = 1,
                 depth: int = 2):
        super().__init__(examples, sampler, maker, batch_size, steps_per_epoch, first_epoch,
                         seed, rank, world)
        self.pin = pin
        self._start(workers, depth, "maskloop-batches")

    def _batch(self, g: int, cache: _EpochCache) -> Batch:
        import torch

        epoch, index, crops = self._crops(g, cache)
        images, masks = [], []
        for i, y, x, rng in crops:
            image, mask = self.maker.make(self.examples[i], y, x, rng)
            images.append(image)
            masks.append(mask)
        xb = torch.stack(images)
        yb = torch.stack(masks).to(torch.int64)
        if self.pin:
            xb, yb = xb.pin_memory(), yb.pin_memory()
        return Batch(epoch, index, self.steps_per_epoch, xb, yb)
