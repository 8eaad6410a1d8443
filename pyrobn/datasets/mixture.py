"""The notes' mixture data (2.4.4) and the MDN's inverse problem (lecture: MDN)."""

from __future__ import annotations

import torch

from pyrobn.device import device as default_device
from pyrobn.validation import check_positive

#: the notes' worked example (2.4.4): r = p(z = 0) = 0.8, N(-1, 1) and N(3, 2^2)
COURSE_MIXTURE = {"r": 0.8, "mu0": -1.0, "s0": 1.0, "mu1": 3.0, "s1": 2.0}


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def course_mixture(
    n: int = 1000,
    seed: int = 0,
    *,
    return_labels: bool = False,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """n draws of x ~ r N(mu0, s0^2) + (1 - r) N(mu1, s1^2), the notes' eq. 49 data.

    z ~ Bernoulli(1 - r) picks the component (z = 0 with probability r = 0.8), then
    x | z ~ N(mu_z, s_z^2) with (mu0, s0) = (-1, 1) and (mu1, s1) = (3, 2).
    Returns x of shape (n,), and z too when ``return_labels``.
    """
    check_positive(n, "n")
    g = _generator(seed)
    p = COURSE_MIXTURE
    z = (torch.rand(n, generator=g, dtype=dtype) >= p["r"]).long()
    mu = torch.tensor([p["mu0"], p["mu1"]], dtype=dtype)[z]
    s = torch.tensor([p["s0"], p["s1"]], dtype=dtype)[z]
    x = mu + s * torch.randn(n, generator=g, dtype=dtype)
    target = device if device is not None else default_device()
    x, z = x.to(target), z.to(target)
    return (x, z) if return_labels else x


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
    check_positive(n, "n")
    g = _generator(seed)
    t = torch.rand(n, 1, generator=g, dtype=dtype)
    x = t + 0.3 * torch.sin(2 * torch.pi * t) + noise * torch.randn(n, 1, generator=g, dtype=dtype)
    target = device if device is not None else default_device()
    return x.to(target), t.to(target)
