"""The notes' mixture data (2.4.4) and the MDN's inverse problem (lecture: MDN)."""

from __future__ import annotations

import math

import numpy as np
import torch

from pyrobn.device import device as default_device
from pyrobn.errors import ConfigurationError
from pyrobn.validation import check_allocation, check_int, to_real_tensor

__all__ = [
    "BLOB_FACTORS",
    "BLOB_MEANS",
    "BLOB_WEIGHTS",
    "COURSE_MIXTURE",
    "course_mixture",
    "course_mixture_log_prob",
    "gaussian_blobs",
    "inverse_sine",
]

#: the notes' worked example (2.4.4, eq. 49-50): z ~ Bernoulli(r), r = p(z = 1) = 0.8,
#: p0 = N(-1, 1) and p1 = N(3, 2^2), so p(x) = (1 - r) p0(x) + r p1(x) (eq. 50)
COURSE_MIXTURE = {"r": 0.8, "mu0": -1.0, "s0": 1.0, "mu1": 3.0, "s1": 2.0}


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(check_int(seed, "seed", low=0))


def _size(n: int, columns: int, what: str) -> int:
    n = check_int(n, "n")
    check_allocation(4 * n * columns, torch.float64, f"{what}({n})")
    return n


def course_mixture(
    n: int = 1000,
    seed: int = 0,
    *,
    return_labels: bool = False,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """n draws of x ~ (1 - r) N(mu0, s0^2) + r N(mu1, s1^2), the notes' eq. 49-50 data.

    As the notes' ``Mixture.generate_data``: z ~ Bernoulli(r) (z = 1 with probability
    r = 0.8), then x | z ~ N(mu_z, s_z^2) with (mu0, s0) = (-1, 1) and (mu1, s1) = (3, 2).
    Returns x of shape (n,), and z too when ``return_labels``.

    >>> course_mixture(3, seed=0, device="cpu").shape
    torch.Size([3])
    """
    n = _size(n, 1, "course_mixture")
    g = _generator(seed)
    p = COURSE_MIXTURE
    z = (torch.rand(n, generator=g, dtype=dtype) < p["r"]).long()
    mu = torch.tensor([p["mu0"], p["mu1"]], dtype=dtype)[z]
    s = torch.tensor([p["s0"], p["s1"]], dtype=dtype)[z]
    x = mu + s * torch.randn(n, generator=g, dtype=dtype)
    target = device if device is not None else default_device()
    x, z = x.to(target), z.to(target)
    return (x, z) if return_labels else x


def course_mixture_log_prob(x: torch.Tensor, r: float | torch.Tensor = 0.8) -> torch.Tensor:
    """log p(x) of eq. 50, log[(1 - r) N(x | -1, 1) + r N(x | 3, 2^2)], elementwise in x.

    ``r`` = p(z = 1) may be a tensor (for example a grid of r values shaped to broadcast).

    >>> round(float(course_mixture_log_prob(torch.tensor([3.0]), 0.8)), 4)
    -1.8351
    """
    p = COURSE_MIXTURE
    x = to_real_tensor(x, "x")
    r = to_real_tensor(r, "r", dtype=x.dtype, device=x.device)
    if not bool(((r >= 0) & (r <= 1)).all()):
        raise ConfigurationError(f"r must lie in [0, 1], got {r.tolist()}")
    log_p0 = -0.5 * ((x - p["mu0"]) / p["s0"]) ** 2 - math.log(math.sqrt(2 * math.pi) * p["s0"])
    log_p1 = -0.5 * ((x - p["mu1"]) / p["s1"]) ** 2 - math.log(math.sqrt(2 * math.pi) * p["s1"])
    return torch.logaddexp(torch.log1p(-r) + log_p0, torch.log(r) + log_p1)


def inverse_sine(
    n: int = 1000,
    seed: int = 0,
    *,
    noise: float = 0.05,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The MDN's classic inverse problem: t ~ U(0, 1), x = t + 0.3 sin(2 pi t) + noise.

    Returns ``(x, t)``, each of shape (n, 1). Predicting t from x is multi-valued
    (up to three branches), which a single Gaussian regressor cannot represent.
    """
    n = _size(n, 2, "inverse_sine")
    if isinstance(noise, bool) or not isinstance(noise, int | float) or not noise >= 0:
        raise ConfigurationError(f"noise must be a number >= 0, got {noise!r}")
    if noise == float("inf"):
        raise ConfigurationError("noise must be finite")
    g = _generator(seed)
    t = torch.rand(n, 1, generator=g, dtype=dtype)
    x = t + 0.3 * torch.sin(2 * torch.pi * t) + noise * torch.randn(n, 1, generator=g, dtype=dtype)
    target = device if device is not None else default_device()
    return x.to(target), t.to(target)


#: three anisotropic 2-D Gaussian blobs: weights, means and the factors A_k (x = m_k + A_k e)
BLOB_WEIGHTS = (0.5, 0.3, 0.2)
BLOB_MEANS = ((0.0, 0.0), (4.0, 1.0), (1.0, 5.0))
BLOB_FACTORS = (((1.0, 0.0), (0.6, 0.5)), ((0.7, 0.0), (0.0, 1.2)), ((0.5, 0.0), (-0.3, 0.8)))


def gaussian_blobs(n: int, seed: int = 0) -> np.ndarray:
    """n draws from a 3-component 2-D Gaussian mixture with correlated components.

    z ~ Categorical(0.5, 0.3, 0.2), x = m_z + A_z e with e ~ N(0, I): the full-mixture
    benchmark and tests fit it with pyrobn and scikit-learn. Returns a (n, 2) array.
    """
    n = _size(n, 2, "gaussian_blobs")
    rng = np.random.default_rng(check_int(seed, "seed", low=0))
    z = rng.choice(3, size=n, p=BLOB_WEIGHTS)
    means, factors = np.asarray(BLOB_MEANS), np.asarray(BLOB_FACTORS)
    return means[z] + np.einsum("nij,nj->ni", factors[z], rng.normal(size=(n, 2)))
