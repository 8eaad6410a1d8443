"""Data for the latent-variable models: the swiss roll (notes Figura 13) and 8x8 digits.

Both come from scikit-learn (the roll is generated, the digits are bundled with it):
nothing is downloaded.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch

from pyrobn.device import to_tensor
from pyrobn.errors import ConfigurationError, ShapeError
from pyrobn.validation import check_finite, check_int, check_positive, check_shape

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

    check_int(n, "n")
    if not np.isfinite(noise) or noise < 0:
        raise ConfigurationError(f"noise must be finite and >= 0, got {noise}")
    x, t = make_swiss_roll(n, noise=noise, random_state=int(seed))
    return to_tensor(x, dtype=dtype, device_=device), to_tensor(t, dtype=dtype, device_=device)


def _on_cpu(value: Any, name: str, shape: tuple[int | None, ...]) -> np.ndarray:
    """``value`` as a finite float64 array of ``shape`` (None = any size)."""
    tensor = to_tensor(value, dtype=torch.float64, device_="cpu")
    return check_finite(check_shape(tensor, shape, name), name).numpy()


def best_direction_spearman(z_fit: Any, t_fit: Any, z_test: Any, t_test: Any) -> float:
    """How well one latent direction orders held-out points by a manifold parameter t.

    The direction u is fitted on (z_fit, t_fit) by least squares on the ranks,
    u = argmin_u min_c ||rank(t_fit) - c - z_fit u||², and the score is Spearman's
    |ρ(z_test u, t_test)| on the held-out points: 1 when the latent orders them along u.
    Issue 6's test of the manifold hypothesis on the swiss roll (notes 2.2.4, Figura 13).
    z of shape (n, L) with n >= 3, t of shape (n,); tensors or arrays.
    """
    from scipy.stats import rankdata, spearmanr

    z_fit = _on_cpu(z_fit, "z_fit", (None, None))
    z_test = _on_cpu(z_test, "z_test", (None, z_fit.shape[1]))
    t_fit = _on_cpu(t_fit, "t_fit", (z_fit.shape[0],))
    t_test = _on_cpu(t_test, "t_test", (z_test.shape[0],))
    if min(z_fit.shape[0], z_test.shape[0]) < 3:
        raise ShapeError(
            f"a rank correlation needs >= 3 rows; z_fit has {z_fit.shape[0]}, "
            f"z_test {z_test.shape[0]}"
        )
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
    split: str = "stratified",
    *,
    binarize: bool = False,
    threshold: float = 0.5,
    levels: int | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Any:
    """scikit-learn's bundled 8x8 digits (1797 images, 10 classes), pixels scaled to [0, 1].

    Grey levels 0..16 become x = level / 16; ``binarize=True`` gives x = 1[level / 16 >
    threshold] (for a Bernoulli likelihood that is a normalised density). The split is
    fixed: 20 % test, stratified by label, seed 0 (1437 train, 360 test images).

    ``split="book"`` is the generative-modelling benchmark of notes 2.2.2 instead
    (:func:`pyrobn.datasets.book_digits`): integer pixels in {0, ..., levels - 1}
    (``levels`` default 17), split by position into 1000 train, 350 validation and 447
    test images, returned as a :class:`~pyrobn.datasets.book_digits.BookDigits`.

    >>> x_train, y_train, x_test, y_test = pyrobn.datasets.digits()
    >>> book = pyrobn.datasets.digits(split="book", levels=17)
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if split == "book":
        from pyrobn.datasets.book_digits import RAW_LEVELS, book_digits

        if binarize:
            raise ConfigurationError(
                "split='book' gives integer levels: use levels=2, not binarize"
            )
        return book_digits(RAW_LEVELS if levels is None else levels, device=device)
    if split != "stratified":
        raise ConfigurationError(f"unknown split {split!r}; choose 'stratified' or 'book'")
    if levels is not None:
        raise ConfigurationError("levels= applies to split='book' (integer pixels) only")
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
