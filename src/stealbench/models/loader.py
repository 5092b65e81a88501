"""Training batches, produced ahead of the step that uses them.

:class:`BatchLoader` turns an epoch's index order into batches: it gathers the uint8 images of
each batch (from an ndarray, or a lazy :class:`stealbench.data.datasets.ImageStore`, whose
Parquet row groups it reads and decodes), their targets and, for Outlier Exposure, the next
outliers; sends the bytes to the device; and converts them there to float (N, C, H, W) in
[0, 1]. On a GPU the gathering runs in a background thread, a few batches ahead, into pinned
host memory, and the copies are non-blocking, so the card computes one step while the host
prepares the next ones. On a CPU it runs in the step loop, as before: a CPU job has its cores
busy with the step itself, and a thread only adds handovers.

Determinism: the producer is one thread that walks the order step by step, so every batch,
and every draw of outliers, comes in the same sequence as in the synchronous path; the bytes
and the conversion (:func:`stealbench.models.training.to_tensor`'s) are the same. The images
store is touched by that thread alone while an epoch runs (its row-group cache is not
thread-safe), and the thread is done before :meth:`BatchLoader.batches` returns, so
validation between epochs reads it alone.

Why a thread and not DataLoader workers: the work per batch is a memory gather and a Parquet
read, which release the GIL; worker processes would each open the file with a cache of their
own (so a row group would be decoded once per worker), need a sampler to reproduce the
block-shuffled order, and cost a process start-up per job.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
import torch

# Batches prepared ahead on a GPU: enough to hide the jitter of a row-group read (one read
# serves many batches), few enough to keep the pinned memory small (a batch of 256 224x224
# RGB images is 38 MB).
PREFETCH = 4
# Produce batches in a background thread: None - on a CUDA device only (see the module's
# docstring); True or False everywhere (tests and benchmarks set it).
BACKGROUND: bool | None = None


class Batch(NamedTuple):
    """One step's inputs: ``step`` (its number within the epoch), ``idx`` (rows of the
    training images, a CPU int64 tensor), float ``images`` (k, C, H, W) in [0, 1] and
    ``targets`` (k, classes) on the device, float ``outliers`` on the device or None, and
    ``outliers_drawn``: how many outliers the stream has handed out once this batch's were
    drawn (a checkpoint taken after this step restarts the stream there; the producer may be
    ahead of the step being run)."""

    step: int
    idx: torch.Tensor
    images: torch.Tensor
    targets: torch.Tensor
    outliers: torch.Tensor | None
    outliers_drawn: int


class OutlierStream:
    """The outliers' order for Outlier Exposure: the next ``batch_size`` indices at each call,
    from a seeded random order of the ``n`` outliers, reshuffled at each pass and cycled.

    Its own generator (seeded from ``seed`` and a stream tag), so the training images' order
    is left as it is. ``drawn`` restarts the stream after that many outliers, as if they had
    been drawn (a resumed job)."""

    def __init__(self, n: int, batch_size: int, seed: int, drawn: int = 0):
        if n == 0:
            raise ValueError("outlier exposure needs at least one outlier image")
        self.n, self.batch_size = n, batch_size
        self.rng = np.random.default_rng([seed, 0x0E])
        self.order, self.pos, self.drawn = self.rng.permutation(n), 0, 0
        while self.drawn + batch_size <= drawn:
            self.next()
        if self.drawn != drawn:
            raise ValueError(f"drawn={drawn} is not a multiple of the batch size {batch_size}")

    def next(self) -> np.ndarray:
        take = []
        while len(take) < self.batch_size:
            if self.pos == len(self.order):
                self.order, self.pos = self.rng.permutation(self.n), 0
            rest = self.batch_size - len(take)
            chunk = self.order[self.pos : self.pos + rest]
            self.pos += len(chunk)
            take.extend(chunk.tolist())
        self.drawn += len(take)
        return np.asarray(take)


_DONE = object()


class BatchLoader:
    """Batches of (``images``, ``targets``) rows on ``device``, in a given order.

    ``images``: uint8 (N, H, W, C), an ndarray or anything indexable by an integer array
    (an ImageStore); ``targets``: float32 (N, classes). ``outliers`` (uint8 images) with
    ``outlier_stream``: each batch also carries the stream's next outliers. ``background``:
    produce batches in a thread ahead of the step (default: on a CUDA device only), at most
    ``prefetch`` ahead.
    """

    def __init__(
        self,
        images,
        targets: torch.Tensor,
        batch_size: int,
        device: torch.device | str,
        outliers=None,
        outlier_stream: OutlierStream | None = None,
        background: bool | None = None,
        prefetch: int = PREFETCH,
    ):
        self.images, self.targets, self.batch_size = images, targets, batch_size
        self.device = torch.device(device)
        self.outliers, self.outlier_stream = outliers, outlier_stream
        if (outliers is None) != (outlier_stream is None):
            raise ValueError("outliers and outlier_stream come together")
        self.pin = self.device.type == "cuda"
        if background is None:
            background = self.pin if BACKGROUND is None else BACKGROUND
        self.background = background
        self.prefetch = max(1, prefetch)

    def steps(self, order) -> int:
        return -(-len(order) // self.batch_size)

    def batches(self, order: torch.Tensor, start: int = 0) -> Iterator[Batch]:
        """The epoch's batches in ``order`` (a permutation of the rows), from step ``start``
        (0: the whole epoch; a resumed job passes the first step it has not run)."""
        if not 0 <= start <= self.steps(order):
            raise ValueError(f"start step {start} outside the epoch's {self.steps(order)} steps")
        host = (self._host(step, order) for step in range(start, self.steps(order)))
        if self.background:
            host = _ahead(host, self.prefetch)
        for step, idx, images, targets, outliers, drawn in host:
            yield Batch(
                step,
                idx,
                self._on_device(images),
                targets.to(self.device, non_blocking=True),
                None if outliers is None else self._on_device(outliers),
                drawn,
            )

    def _host(self, step: int, order: torch.Tensor):
        """One batch's rows gathered on the host (pinned for a GPU): the producer's work."""
        idx = order[step * self.batch_size : (step + 1) * self.batch_size]
        images = torch.from_numpy(np.ascontiguousarray(self.images[idx.numpy()]))
        targets = self.targets[idx]
        outliers, drawn = None, 0
        if self.outlier_stream is not None:
            picked = self.outlier_stream.next()
            outliers = torch.from_numpy(np.ascontiguousarray(self.outliers[picked]))
            drawn = self.outlier_stream.drawn
        if self.pin:
            images, targets = images.pin_memory(), targets.pin_memory()
            outliers = None if outliers is None else outliers.pin_memory()
        return step, idx, images, targets, outliers, drawn

    def _on_device(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (k, H, W, C) -> float (k, C, H, W) in [0, 1] on the device: the bytes travel
        and are converted there (to_tensor's arithmetic and layout)."""
        x = images.to(self.device, non_blocking=True)
        return x.permute(0, 3, 1, 2).float().div_(255.0)


def _ahead(items: Iterator, depth: int) -> Iterator:
    """``items``, computed by a background thread at most ``depth`` ahead of the consumer.

    The thread ends with the items, or when the consumer stops early (it closes this
    generator, or drops it after an exception): it is joined before this generator ends, so
    whatever ``items`` reads is read by no one else afterwards. An exception in the thread
    is raised in the consumer at the item where it happened."""
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        ready.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            ready.put(_DONE)
        except BaseException as error:  # handed to the consumer, raised there
            ready.put(error)

    thread = threading.Thread(target=produce, name="stealbench-batches", daemon=True)
    thread.start()
    try:
        while True:
            item = ready.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                ready.get(timeout=0.1)
            except queue.Empty:
                pass
        thread.join()
