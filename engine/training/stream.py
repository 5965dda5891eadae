"""Batches of augmented crops, made on a background thread while the network computes.

Cutting, normalising and augmenting a batch is NumPy and small torch work that mostly releases
the GIL; doing it on a thread hides it behind the training step (on a GPU it would otherwise
take a good share of each step). Every crop's random numbers are derived from (seed, epoch,
position in the epoch), so batches do not depend on thread timing, batch size or process count.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass

import numpy as np

from engine.training.augment import CropMaker
from engine.training.data import CropSampler, Example, shard


@dataclass
class Batch:
    epoch: int
    index: int  # step within the epoch
    steps: int  # steps in this epoch
    images: "object"  # float32 B x C x S x S (pinned on CUDA)
    masks: "object"  # int64 B x S x S


class BatchStream:
    """Iterates over :class:`Batch` from ``first_epoch`` on, forever, until :meth:`close`.

    ``workers`` threads each make every ``workers``-th batch; batches come out in order. With
    ``workers=0`` each batch is made when asked for, on the caller's thread: on a CPU whose
    cores all compute the network, a producer thread would only preempt them.
    """

    def __init__(self, examples: list[Example], sampler: CropSampler, maker: CropMaker,
                 batch_size: int, steps_per_epoch: int, first_epoch: int, seed: int,
                 rank: int = 0, world: int = 1, pin: bool = False, workers: int = 1,
                 depth: int = 2):
        self.examples = examples
        self.sampler = sampler
        self.maker = maker
        self.batch_size = batch_size
        self.steps_per_epoch = steps_per_epoch
        self.first_epoch = first_epoch
        self.seed = seed
        self.rank, self.world = rank, world
        self.pin = pin
        self._stop = threading.Event()
        self._queues = [queue.Queue(maxsize=depth) for _ in range(workers)]
        self._next = 0
        self._inline_epoch, self._inline_samples = None, []
        self._threads = [threading.Thread(target=self._run, args=(w,), daemon=True,
                                          name=f"maskloop-batches-{w}")
                         for w in range(len(self._queues))]
        for thread in self._threads:
            thread.start()

    def _make(self, epoch: int, samples: list, start: int) -> Batch:
        import torch

        images, masks = [], []
        for j in range(self.batch_size):
            position = start + j
            i, y, x = samples[position]
            rng = np.random.default_rng([self.seed, epoch, position * self.world + self.rank, 13])
            image, mask = self.maker.make(self.examples[i], y, x, rng)
            images.append(image)
            masks.append(mask)
        xb = torch.stack(images)
        yb = torch.stack(masks).to(torch.int64)
        if self.pin:
            xb, yb = xb.pin_memory(), yb.pin_memory()
        return Batch(epoch, start // self.batch_size, self.steps_per_epoch, xb, yb)

    def _put(self, q: queue.Queue, item) -> bool:
        while not self._stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _samples(self, epoch: int) -> list:
        everything = self.sampler.epoch(epoch, self.steps_per_epoch * self.batch_size * self.world)
        return shard(everything, self.rank, self.world)

    def _run(self, worker: int) -> None:
        q = self._queues[worker]
        n = len(self._queues)
        cached_epoch, samples = None, []
        g = worker
        try:
            while not self._stop.is_set():
                epoch = self.first_epoch + g // self.steps_per_epoch
                index = g % self.steps_per_epoch
                if epoch != cached_epoch:
                    samples, cached_epoch = self._samples(epoch), epoch
                if not self._put(q, self._make(epoch, samples, index * self.batch_size)):
                    return
                g += n
        except BaseException as exc:  # handed to the consumer, raised there
            self._put(q, exc)

    def __iter__(self):
        return self

    def __next__(self) -> Batch:
        if not self._queues:
            if self._stop.is_set():
                raise StopIteration
            g = self._next
            self._next += 1
            epoch = self.first_epoch + g // self.steps_per_epoch
            if epoch != self._inline_epoch:
                self._inline_samples, self._inline_epoch = self._samples(epoch), epoch
            return self._make(epoch, self._inline_samples, (g % self.steps_per_epoch) * self.batch_size)
        q = self._queues[self._next % len(self._queues)]
        self._next += 1
        while True:
            try:
                item = q.get(timeout=0.5)
                break
            except queue.Empty:
                if self._stop.is_set():
                    raise StopIteration from None
        if isinstance(item, BaseException):
            raise item
        return item

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
