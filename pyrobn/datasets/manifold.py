"""Data for the latent-variable models: the swiss roll (notes Figura 13) and 8x8 digits.

Both come from scikit-learn (the roll is generated, the digits are bundled with it):
nothing is downloaded.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from pyrobn.device import to_tensor
from pyrobn.errors import ConfigurationError
from pyrobn.validation import check_positive

#: the fixed split of :func:`digits`: 20 % test, stratified by label, seed 0
DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0


def swiss_roll(
    n: int = 1000,
    noise: float = 0.1,
    seed: int = 0,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """n points of the swiss roll in R^3 and their roll parameter (notes 2.2.4, Figura 13).

    t ~ U(3π/2, 9π/2), h ~ U(0, 21); x = (t cos t, h, t sin t) + noise · N(0, I), the
    notes' ``make_swiss_roll(10000, noise=0.1)``. A 2-D manifold (t, h) in R^3: the
    manifold hypothesis in its smallest form. Returns ``(x, t)`` of shapes (n, 3), (n,).

    >>> x, t = pyrobn.datasets.swiss_roll(2000, seed=0)
    """
    from sklearn.datasets import make_swiss_roll

    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigurationError(f"n must be a positive int, got {n!r}")
    if not np.isfinite(noise) or noise < 0:
        raise ConfigurationError(f"noise must be finite and >= 0, got {noise}")
    x, t = make_swiss_roll(n, noise=noise, random_state=int(seed))
    return to_tensor(x, dtype=dtype, device_=device), to_tensor(t, dtype=dtype, device_=device)


class DigitsSplit(NamedTuple):
    """The fixed split of :func:`digits`: pixels in [0, 1] (n, 64) and labels (n,)."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def digits(
    *,
    binarize: bool = False,
    threshold: float = 0.5,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> DigitsSplit:
    """scikit-learn's bundled 8x8 digits (1797 images, 10 classes), pixels scaled to [0, 1].

    Grey levels 0..16 become x = level / 16; ``binarize=True`` gives x = 1[level / 16 >
    threshold] (for a Bernoulli likelihood that is a normalised density). The split is
    fixed: 20 % test, stratified by label, seed 0 (1437 train, 360 test images).

    >>> x_train, y_train, x_test, y_test = pyrobn.datasets.digits()
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    check_positive(threshold, "threshold")
    if threshold >= 1:
        raise ConfigurationError(f"threshold must lie in (0, 1), got {threshold}")
    data = load_digits()
    x = data.data / 16.0
    if binarize:
        x = (x > threshold).astype(np.float64)
    x_train, x_test, y_train, y_test = train_test_split(
        x,
        data.target,
        test_size=DIGITS_TEST_FRACTION,
        stratify=data.target,
        random_state=DIGITS_SPLIT_SEED,
    )
    return DigitsSplit(
        to_tensor(x_train, dtype=dtype, device_=device),
        to_tensor(y_train, dtype=torch.long, device_=device),
        to_tensor(x_test, dtype=dtype, device_=device),
        to_tensor(y_test, dtype=torch.long, device_=device),
    )
