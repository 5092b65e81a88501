"""Running a defense's own model on queries so that each answer depends on its query alone.

CPU kernels choose their blocking by batch size, so a network's output for an image can
differ in the last bits between a batch of 1 and a batch of 300 (about 1e-8 for the small
CNNs here). A defense must answer an image the same way however it is batched (see
:mod:`.registry`), so its model always sees batches of exactly ``FIXED_BATCH`` rows, the last
padded with black images. On CPU a row's output then does not depend on the other rows or on
its position (tests check it), and a query asked alone gets the very bits it gets in a batch.
"""

from __future__ import annotations

import numpy as np

FIXED_BATCH = 128  # rows per forward pass; a lone query costs a padded batch


def fixed_batches(images: np.ndarray, batch_size: int | None = None):
    """Yield ``(batch, n)``: float tensors of exactly ``batch_size`` (default ``FIXED_BATCH``)
    rows, the first ``n`` of them real."""
    from ..models.training import to_tensor

    batch_size = batch_size or FIXED_BATCH
    for start in range(0, len(images), batch_size):
        chunk = np.asarray(images[start : start + batch_size], dtype=np.uint8)
        padded = np.zeros((batch_size, *chunk.shape[1:]), dtype=np.uint8)
        padded[: len(chunk)] = chunk
        yield to_tensor(padded), len(chunk)


def model_softmax(model, images: np.ndarray) -> np.ndarray:
    """The model's softmax (float64, computed from its float32 logits) in fixed-size batches."""
    import torch

    from ..models.training import model_device

    model.eval()
    device = model_device(model)
    out = []
    with torch.no_grad():
        for batch, n in fixed_batches(images):
            logits = model(batch.to(device))[:n].double()
            out.append(torch.softmax(logits, dim=1).cpu().numpy())
    return np.concatenate(out)
