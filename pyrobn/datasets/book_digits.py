"""The book's digits benchmark: scikit-learn's 8x8 digits as 17-level categorical images.

J. Tomczak's *Deep Generative Modeling*, whose taxonomy the chapter follows (notes 2.2.2),
trains every paradigm on ``sklearn.datasets.load_digits().data`` in its original order,
split by position: train ``[:1000]``, validation ``[1000:1350]``, test ``[1350:]`` (447
images). Each pixel is an integer grey level 0..16, modelled as a categorical variable
with 17 levels, and the score is the negative log-likelihood in nats per image,

    NLL = -(1 / N_test) Σ_n log p(x_n),   log p(x_n) = Σ_{d=1}^{64} log p(x_nd | ...),

summed over the 64 pixels, averaged over the test images; bits per dimension are
NLL / (64 ln 2). The data is bundled with scikit-learn: nothing is downloaded.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from pyrobn.device import to_tensor
from pyrobn.validation import check_int

#: the book's split of ``load_digits().data`` (original order): [0, 1000), [1000, 1350), rest
BOOK_TRAIN_END = 1000
BOOK_VAL_END = 1350
#: the grey levels of the raw digits (0..16)
RAW_LEVELS = 17
#: pixels per image (8 x 8)
IMAGE_SHAPE = (8, 8)


class BookDigits(NamedTuple):
    """The book's split: integer pixels (n, 64) in {0, ..., levels - 1} and labels (n,)."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def requantize(levels_raw: np.ndarray, levels: int) -> np.ndarray:
    """Grey level v in {0..16} -> floor(v · levels / 17) in {0, ..., levels - 1}.

    ``levels = 17`` is the identity; ``levels = 2`` thresholds at v >= 9 (a binary image).
    """
    return np.floor(levels_raw * levels / RAW_LEVELS).astype(np.int64)


def book_digits(
    levels: int = RAW_LEVELS,
    *,
    device: torch.device | str | None = None,
) -> BookDigits:
    """The book's digits split, pixels as integers in {0, ..., levels - 1} (dtype long).

    ``levels`` (2..17) re-quantises the 17 grey levels with :func:`requantize`; the
    benchmark uses 17. Returns ``(x_train, y_train, x_val, y_val, x_test, y_test)`` of
    1000, 350 and 447 images of 64 pixels (row-major 8 x 8).

    >>> data = book_digits()
    >>> data.x_train.shape, data.x_test.shape, int(data.x_train.max())
    (torch.Size([1000, 64]), torch.Size([447, 64]), 16)
    """
    from sklearn.datasets import load_digits

    levels = check_int(levels, "levels", low=2)
    if levels > RAW_LEVELS:
        from pyrobn.errors import ConfigurationError

        raise ConfigurationError(
            f"levels must lie in 2..{RAW_LEVELS} (the digits have {RAW_LEVELS} grey levels), "
            f"got {levels}"
        )
    data = load_digits()
    x = requantize(data.data.astype(np.int64), levels)
    y = data.target.astype(np.int64)
    parts = (
        slice(0, BOOK_TRAIN_END),
        slice(BOOK_TRAIN_END, BOOK_VAL_END),
        slice(BOOK_VAL_END, None),
    )
    tensors = []
    for part in parts:
        tensors.append(to_tensor(x[part], dtype=torch.long, device_=device))
        tensors.append(to_tensor(y[part], dtype=torch.long, device_=device))
    return BookDigits(*tensors)


__all__ = [
    "BOOK_TRAIN_END",
    "BOOK_VAL_END",
    "RAW_LEVELS",
    "BookDigits",
    "book_digits",
    "requantize",
]
