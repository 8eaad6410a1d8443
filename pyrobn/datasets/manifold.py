"""Data for the latent-variable models: the swiss roll (notes Figura 13) and 8x8 digits.

Both come from scikit-learn (the roll is generated, the digits are bundled with it):
nothing is downloaded.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch

from pyrobn.device import to_tensor
from pyrobn.errors import ConfigurationError, NonFiniteError, ShapeError
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


def _as_array(value: Any, name: str, ndim: int) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    array = np.asarray(value, dtype=np.float64)
    if array.ndim != ndim:
        raise ShapeError(f"{name} must have {ndim} dimension(s), got shape {array.shape}")
    if not np.isfinite(array).all():
        index = tuple(int(i) for i in np.argwhere(~np.isfinite(array))[0])
        raise NonFiniteError(f"{name} has a non-finite value {array[index]} at index {index}")
    return array


def best_direction_spearman(z_fit: Any, t_fit: Any, z_test: Any, t_test: Any) -> float:
    """How well one latent direction orders held-out points by a manifold parameter t.

    The direction u is fitted on (z_fit, t_fit) by least squares on the ranks,
    u = argmin_u min_c ||rank(t_fit) - c - z_fit u||², and the score is Spearman's
    |ρ(z_test u, t_test)| on the held-out points: 1 when the latent orders them along u.
    Issue 6's test of the manifold hypothesis on the swiss roll (notes 2.2.4, Figura 13).
    z of shape (n, L), t of shape (n,); tensors or arrays.
    """
    from scipy.stats import rankdata, spearmanr

    z_fit, z_test = _as_array(z_fit, "z_fit", 2), _as_array(z_test, "z_test", 2)
    t_fit, t_test = _as_array(t_fit, "t_fit", 1), _as_array(t_test, "t_test", 1)
    for z, t, which in ((z_fit, t_fit, "fit"), (z_test, t_test, "test")):
        if z.shape[0] != t.shape[0] or z.shape[0] < 3:
            raise ShapeError(
                f"z_{which} {z.shape} and t_{which} {t.shape} need the same number (>= 3) of rows"
            )
    if z_test.shape[1] != z_fit.shape[1]:
        raise ShapeError(f"z_test has {z_test.shape[1]} columns, z_fit {z_fit.shape[1]}")
    centred = z_fit - z_fit.mean(0)
    ranks = rankdata(t_fit) - (t_fit.shape[0] + 1) / 2
    u = np.linalg.lstsq(centred, ranks, rcond=None)[0]
    return float(abs(spearmanr(z_test @ u, t_test)[0]))


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
