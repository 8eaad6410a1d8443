"""Information theory of the notes (2.4.3): entropy, cross-entropy, KL divergence.

    H(p) = E_p[-log p(x)]                        (eq. 43)
    CE(p, q) = E_p[-log q(x)]                    (eq. 44)
    CE(p, q) = H(p) + KL(p || q)                 (eq. 46)
    KL(p || q) = E_p[log p(x) / q(x)] >= 0       (eq. 47, Gibbs' inequality)

and with p = p_D the empirical distribution, CE(p_D, p_theta) = -(1/K) log p_theta(D)
(eq. 45), so maximum likelihood = minimum cross-entropy = minimum KL (eq. 48).

Each function takes either probability tables (tensors whose last axis is a
distribution; exact), or torch distributions: ``Normal``/``MultivariateNormal`` in closed
form, and any pair by Monte Carlo, which returns a :class:`MonteCarloEstimate` (value and
standard error). Results are in nats.

>>> kl_divergence(torch.tensor([0.5, 0.5]), torch.tensor([0.9, 0.1]))
>>> kl_divergence(Normal(0., 1.), Normal(1., 2.))                 # closed form
>>> kl_divergence(p, q, method="mc", num_samples=100_000, seed=0)  # MonteCarloEstimate
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch.distributions import Distribution, MultivariateNormal, Normal

from pyrobn.errors import ConfigurationError, ShapeError
from pyrobn.validation import check_distribution, check_positive

__all__ = [
    "MonteCarloEstimate",
    "cross_entropy",
    "entropy",
    "fit_gaussian_by_kl",
    "gaussian_cross_entropy",
    "gaussian_entropy",
    "gaussian_kl",
    "kl_divergence",
]


@dataclass(frozen=True)
class MonteCarloEstimate:
    """A Monte Carlo mean: ``value`` +- ``stderr`` (= sample sd / sqrt(num_samples))."""

    value: torch.Tensor
    stderr: torch.Tensor
    num_samples: int

    def __float__(self) -> float:
        return float(self.value)

    def __repr__(self) -> str:
        v, s = self.value, self.stderr
        if v.numel() == 1:
            return f"MonteCarloEstimate({float(v):.6g} +- {float(s):.2g}, n={self.num_samples})"
        return f"MonteCarloEstimate(value={v}, stderr={s}, n={self.num_samples})"


# ------------------------------------------------------------------------- tables
def _table(p: torch.Tensor, name: str) -> torch.Tensor:
    t = p if p.is_floating_point() else p.double()
    if t.dim() == 0:
        raise ShapeError(f"{name} must have a last axis holding a distribution, got a scalar")
    return check_distribution(t, name)


def _xlogy(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """x log y with 0 log 0 = 0 (and x > 0, y = 0 -> -inf)."""
    return torch.special.xlogy(x, y)


def _tables(p: torch.Tensor, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    pt, qt = _table(p, "p"), _table(q, "q")
    if pt.shape[-1] != qt.shape[-1]:
        raise ShapeError(
            f"p and q must be tables over one support: p has {pt.shape[-1]} states, "
            f"q has {qt.shape[-1]}"
        )
    dtype = torch.promote_types(pt.dtype, qt.dtype)
    return pt.to(dtype), qt.to(dtype)


# ---------------------------------------------------------------------- Gaussians
def _as_mvn(d: Normal | MultivariateNormal) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean (..., D), scale_tril (..., D, D)); a Normal is read as a univariate (D = 1)."""
    if isinstance(d, MultivariateNormal):
        return d.loc, d.scale_tril
    return d.loc.unsqueeze(-1), d.scale.unsqueeze(-1).unsqueeze(-1)


def gaussian_entropy(scale_tril: torch.Tensor) -> torch.Tensor:
    """H(N(mu, L L^T)) = (D/2) log(2 pi e) + sum_i log L_ii."""
    d = scale_tril.shape[-1]
    half_log_det = scale_tril.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    return 0.5 * d * math.log(2 * math.pi * math.e) + half_log_det


def gaussian_kl(
    mean_p: torch.Tensor, tril_p: torch.Tensor, mean_q: torch.Tensor, tril_q: torch.Tensor
) -> torch.Tensor:
    """KL(N(m_p, S_p) || N(m_q, S_q)) in closed form (S = L L^T):

    0.5 [tr(S_q^-1 S_p) + (m_q - m_p)^T S_q^-1 (m_q - m_p) - D + log det S_q - log det S_p].
    """
    d = mean_p.shape[-1]
    tril_q_b, tril_p_b = torch.broadcast_tensors(tril_q, tril_p)
    m = torch.linalg.solve_triangular(tril_q_b, tril_p_b, upper=False)  # L_q^-1 L_p
    trace = (m * m).sum((-2, -1))
    diff = (mean_q - mean_p).unsqueeze(-1)
    y = torch.linalg.solve_triangular(tril_q, diff.expand(*tril_q.shape[:-1], 1), upper=False)
    maha = (y * y).sum((-2, -1))
    log_det = 2 * (
        tril_q.diagonal(dim1=-2, dim2=-1).log().sum(-1)
        - tril_p.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    )
    return 0.5 * (trace + maha - d + log_det)


def gaussian_cross_entropy(
    mean_p: torch.Tensor, tril_p: torch.Tensor, mean_q: torch.Tensor, tril_q: torch.Tensor
) -> torch.Tensor:
    """CE(N_p, N_q) = H(N_p) + KL(N_p || N_q) (eq. 46)."""
    return gaussian_entropy(tril_p) + gaussian_kl(mean_p, tril_p, mean_q, tril_q)


def _is_gaussian(d: Any) -> bool:
    return isinstance(d, (Normal, MultivariateNormal))


# ------------------------------------------------------------------- Monte Carlo
def _mc(values: torch.Tensor, n: int) -> MonteCarloEstimate:
    return MonteCarloEstimate(values.mean(0), values.std(0, unbiased=True) / math.sqrt(n), n)


def _draw(p: Distribution, num_samples: int, seed: int | None) -> torch.Tensor:
    check_positive(num_samples, "num_samples")
    if seed is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return p.sample((int(num_samples),))
    return p.sample((int(num_samples),))


def _method(method: str) -> str:
    if method not in ("auto", "exact", "mc"):
        raise ConfigurationError(f"method must be 'auto', 'exact' or 'mc', got {method!r}")
    return method


def _exact_unavailable(what: str, p: Any, q: Any = None) -> ConfigurationError:
    names = type(p).__name__ + ("" if q is None else f", {type(q).__name__}")
    return ConfigurationError(
        f"no closed form for {what}({names}); use method='mc' (Monte Carlo with a standard error)"
    )


def _information(
    what: str,
    p: torch.Tensor | Distribution,
    q: torch.Tensor | Distribution | None,
    method: str,
    num_samples: int,
    seed: int | None,
    *,
    table: Callable[[], torch.Tensor],
    gaussian: Callable[[], torch.Tensor],
    registered: Callable[[], torch.Tensor],
    integrand: Callable[[torch.Tensor], torch.Tensor],
) -> torch.Tensor | MonteCarloEstimate:
    """The one dispatch of H, CE and KL: tables exactly; Gaussians in closed form; a
    formula torch registers; else (or ``method="mc"``) E_p[integrand(x)] by Monte Carlo."""
    method = _method(method)
    if isinstance(p, torch.Tensor) or isinstance(q, torch.Tensor):
        return table()
    if method != "mc":
        if _is_gaussian(p) and (q is None or _is_gaussian(q)):
            return gaussian()
        try:
            return registered()
        except NotImplementedError:
            if method == "exact":
                raise _exact_unavailable(what, p, q) from None
    return _mc(integrand(_draw(p, num_samples, seed)), num_samples)


def _table_pair(p: Any, q: Any) -> tuple[torch.Tensor, torch.Tensor]:
    return _tables(torch.as_tensor(p), torch.as_tensor(q))


# ---------------------------------------------------------------------- public API
def entropy(
    p: torch.Tensor | Distribution,
    *,
    method: str = "auto",
    num_samples: int = 10_000,
    seed: int | None = None,
) -> torch.Tensor | MonteCarloEstimate:
    """H(p) = E_p[-log p(x)] (eq. 43), in nats.

    A table: -sum_i p_i log p_i (last axis). A distribution: its closed form
    (Gaussians: (D/2) log(2 pi e) + log det L; others: ``p.entropy()`` if defined),
    or with ``method="mc"`` the mean of -log p(x_s), x_s ~ p, and its standard error.
    """

    def table() -> torch.Tensor:
        pt = _table(p, "p")
        return -_xlogy(pt, pt).sum(-1)

    return _information(
        "entropy",
        p,
        None,
        method,
        num_samples,
        seed,
        table=table,
        gaussian=lambda: gaussian_entropy(_as_mvn(p)[1]),
        registered=lambda: p.entropy(),
        integrand=lambda x: -p.log_prob(x),
    )


def cross_entropy(
    p: torch.Tensor | Distribution,
    q: torch.Tensor | Distribution,
    *,
    method: str = "auto",
    num_samples: int = 10_000,
    seed: int | None = None,
) -> torch.Tensor | MonteCarloEstimate:
    """CE(p, q) = E_p[-log q(x)] (eq. 44) = H(p) + KL(p || q) (eq. 46), in nats.

    Tables: -sum_i p_i log q_i. Gaussians: closed form. Otherwise (or ``method="mc"``):
    the mean of -log q(x_s), x_s ~ p, with its standard error. With p the empirical
    distribution of data D, CE(p_D, q) = -(1/K) log q(D) (eq. 45).
    """

    def table() -> torch.Tensor:
        pt, qt = _table_pair(p, q)
        return -_xlogy(pt, qt).sum(-1)

    return _information(
        "cross_entropy",
        p,
        q,
        method,
        num_samples,
        seed,
        table=table,
        gaussian=lambda: gaussian_cross_entropy(*_as_mvn(p), *_as_mvn(q)),
        registered=lambda: p.entropy() + torch.distributions.kl_divergence(p, q),
        integrand=lambda x: -q.log_prob(x),
    )


def kl_divergence(
    p: torch.Tensor | Distribution,
    q: torch.Tensor | Distribution,
    *,
    method: str = "auto",
    num_samples: int = 10_000,
    seed: int | None = None,
) -> torch.Tensor | MonteCarloEstimate:
    """KL(p || q) = E_p[log p(x) - log q(x)] (eq. 47) >= 0, in nats.

    Tables: sum_i p_i (log p_i - log q_i) (+inf where q_i = 0 < p_i). Gaussians: the
    closed form of :func:`gaussian_kl`; other pairs with a registered torch formula use
    it; otherwise (or ``method="mc"``) the mean of log p(x_s) - log q(x_s), x_s ~ p,
    with its standard error.
    """

    def table() -> torch.Tensor:
        pt, qt = _table_pair(p, q)
        return (_xlogy(pt, pt) - _xlogy(pt, qt)).sum(-1)

    return _information(
        "kl_divergence",
        p,
        q,
        method,
        num_samples,
        seed,
        table=table,
        gaussian=lambda: gaussian_kl(*_as_mvn(p), *_as_mvn(q)),
        registered=lambda: torch.distributions.kl_divergence(p, q),
        integrand=lambda x: p.log_prob(x) - q.log_prob(x),
    )


def fit_gaussian_by_kl(
    log_p: Any,
    direction: str,
    *,
    init: tuple[float, float] = (0.0, 1.0),
    grid: torch.Tensor | None = None,
    steps: int = 300,
) -> tuple[float, float]:
    """The 1-D Gaussian q = N(m, s^2) minimising KL(p || q) or KL(q || p) (Figura 16).

    ``log_p`` maps a tensor of points to log p (normalised on ``grid``); the
    divergences are computed by quadrature on ``grid`` (default [-10, 10], 4001 points)
    and minimised over (m, log s) with L-BFGS from ``init``.
    ``direction="forward"``: KL(p || q), mass-covering (moment matching);
    ``direction="reverse"``: KL(q || p), mode-seeking (locks onto one mode).
    Returns (m, s).
    """
    if direction not in ("forward", "reverse"):
        raise ConfigurationError(f"direction must be 'forward' or 'reverse', got {direction!r}")
    check_positive(init[1], "init scale")
    x = grid if grid is not None else torch.linspace(-10, 10, 4001, dtype=torch.float64)
    dx = x[1] - x[0]
    lp = log_p(x)
    lp = lp - torch.logsumexp(lp, 0) - dx.log()  # normalise on the grid
    p = lp.exp()
    m = torch.tensor(float(init[0]), dtype=x.dtype, requires_grad=True)
    log_s = torch.tensor(math.log(init[1]), dtype=x.dtype, requires_grad=True)
    opt = torch.optim.LBFGS([m, log_s], max_iter=steps, line_search_fn="strong_wolfe")

    def objective() -> torch.Tensor:
        opt.zero_grad()
        lq = Normal(m, log_s.exp()).log_prob(x)
        if direction == "forward":
            value = (p * (lp - lq)).sum() * dx
        else:
            q = lq.exp()
            value = (q * (lq - lp)).sum() * dx
        value.backward()
        return value

    opt.step(objective)
    return float(m.detach()), float(log_s.detach().exp())
