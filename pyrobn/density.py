"""Non-parametric densities: the empirical distribution (eq. 13) and KDE (eq. 14).

The notes (2.2.1) start generative modelling from the empirical distribution
p_D(x) = (1/K) sum_k delta_{x^k}(x) (eq. 13) and smooth it with a kernel,
KDE(x) = (1/K) sum_k Kern(x - x^k) (eq. 14). Here the kernel is the Gaussian (RBF) one
of Figuras 6-7, Kern(u) = N(u | 0, h^2 I), in any dimension D.

KDE is the Gaussian mixture with one component per data point and a uniform prior over
them (the notes' remark after eq. 14): :meth:`KDE.graph` draws it so.

>>> kde = KDE(torch.randn(500, 2, generator=torch.Generator().manual_seed(0)), "scott")
>>> round(kde.bandwidth, 4), kde.log_prob(torch.zeros(1, 2)).shape
(0.3652, torch.Size([1]))
"""

from __future__ import annotations

import math
import numbers
from typing import TYPE_CHECKING, Any

import torch

from pyrobn.errors import ConfigurationError, ShapeError
from pyrobn.random import generator
from pyrobn.validation import (
    check_allocation,
    check_finite,
    check_int,
    check_positive,
    to_real_tensor,
)

if TYPE_CHECKING:
    from pyrobn.graph import ModelGraph

__all__ = [
    "KDE",
    "EmpiricalDistribution",
    "as_points",
    "positive_number",
    "scott_factor",
    "silverman_factor",
    "squared_distances",
]

#: pairwise entries evaluated at once by the chunked kernels (about 128 MB in float64)
_CHUNK_ENTRIES = 1 << 24


def as_points(
    x: Any,
    name: str,
    *,
    dim: int | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    min_rows: int = 1,
) -> torch.Tensor:
    """``x`` as a finite (N, D) float tensor; a vector (N,) is read as N points in 1-D.

    Raises :class:`ShapeError` for an empty input, more than two axes, D != ``dim`` or a
    ragged list; :class:`ConfigurationError` for complex numbers or strings (never cast
    silently); :class:`NonFiniteError` (naming the first bad index) for NaN or inf.

    >>> as_points([1.0, 2.0], "x").shape
    torch.Size([2, 1])
    """
    if device is None and isinstance(x, torch.Tensor):
        device = x.device
    if not isinstance(x, torch.Tensor) and dtype is not None:
        # no float32 round trip before the cast: read Python and NumPy floats in float64
        t = to_real_tensor(x, name, dtype=torch.float64, device=device).to(dtype)
    else:
        t = to_real_tensor(x, name, dtype=dtype, device=device)
    if t.dim() == 1 and (dim is None or dim == 1):
        t = t.unsqueeze(-1)
    if t.dim() != 2:
        wanted = f"(N, {dim})" if dim is not None else "(N, D) or (N,)"
        raise ShapeError(f"{name} must have shape {wanted}, got {tuple(t.shape)}")
    if dim is not None and t.shape[1] != dim:
        raise ShapeError(f"{name} must have shape (N, {dim}), got {tuple(t.shape)}")
    if t.shape[0] < min_rows:
        raise ShapeError(f"{name} needs at least {min_rows} row(s), got shape {tuple(t.shape)}")
    return check_finite(t, name)


def positive_number(value: Any, name: str, *, allow_zero: bool = False) -> float:
    """``value`` as a float if it is one real, finite number > 0 (>= 0 with ``allow_zero``),
    else :class:`ConfigurationError` naming ``name``: bools, strings, complex numbers,
    lists and arrays are refused (a hyper-parameter is one number).

    >>> positive_number(0.5, "lr"), positive_number(0, "tol", allow_zero=True)
    (0.5, 0.0)
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigurationError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigurationError(f"{name} must be a finite number {bound}, got {value}")
    return value


def squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """||a_i - b_j||^2 for a (M, D) and b (N, D), by one matrix product, clamped at 0.

    Callers centre both sets on one point first, which keeps the expansion
    |a|^2 + |b|^2 - 2 a.b accurate (relative error ~ eps * spread^2 / distance^2).
    """
    d2 = (a * a).sum(-1, keepdim=True) + (b * b).sum(-1) - 2.0 * (a @ b.T)
    return d2.clamp_min_(0.0)


def _gaussian_kde_log_prob(
    queries: torch.Tensor,
    data: torch.Tensor,
    bandwidths: torch.Tensor,
    *,
    exclude_self: bool = False,
) -> torch.Tensor:
    """log KDE(q) for every query row and every bandwidth (eq. 14), chunked over queries.

    Returns shape (H, M) for H bandwidths. ``exclude_self`` drops the pair (i, i) (the
    queries are then the first M data rows), giving leave-one-out scores with K - 1 terms.
    """
    n, d = data.shape
    m = queries.shape[0]
    centre = data.mean(0)
    data_c = data - centre
    queries_c = queries - centre
    h2 = bandwidths.reshape(-1, 1, 1) ** 2
    count = n - 1 if exclude_self else n
    const = -math.log(count) - 0.5 * d * torch.log(2 * math.pi * h2.reshape(-1))
    rows = max(1, _CHUNK_ENTRIES // max(n * bandwidths.numel(), 1))
    out = []
    for start in range(0, m, rows):
        d2 = squared_distances(queries_c[start : start + rows], data_c)
        if exclude_self:
            idx = torch.arange(start, start + d2.shape[0], device=d2.device)
            d2[idx - start, idx] = math.inf
        out.append(torch.logsumexp(-0.5 * d2 / h2, dim=-1))
    return torch.cat(out, dim=-1) + const.unsqueeze(-1)


def _spread(data: torch.Tensor) -> float:
    """sigma = sqrt(mean_d Var(x_d)) (ddof = 1): the data's average standard deviation."""
    if data.shape[0] < 2:
        raise ShapeError(f"a bandwidth rule needs at least 2 data points, got {data.shape[0]}")
    sigma = float(data.var(0, unbiased=True).mean().sqrt())
    if sigma <= 0:
        raise ConfigurationError("the data have zero spread: every point is the same")
    return sigma


def scott_factor(n: int, d: int) -> float:
    """Scott's factor n^(-1/(D+4)) (the bandwidth in units of the data's spread)."""
    return n ** (-1.0 / (d + 4))


def silverman_factor(n: int, d: int) -> float:
    """Silverman's factor (n (D+2) / 4)^(-1/(D+4))."""
    return (n * (d + 2) / 4.0) ** (-1.0 / (d + 4))


class KDE:
    """Gaussian kernel density estimate, KDE(x) = (1/K) sum_k N(x | x^k, h^2 I) (eq. 14).

    Args:
        data: (K, D) points (a vector is K points in 1-D); float64 unless given as a
            float32 tensor; the KDE lives on the data's device.
        bandwidth: h > 0, or a rule:
            ``"scott"``: h = sigma * K^(-1/(D+4));
            ``"silverman"``: h = sigma * (K (D+2)/4)^(-1/(D+4));
            where sigma = sqrt(mean_d Var(x_d)) is the data's spread (ddof 1), so the
            rules scale with the data (scaling the data by c scales h by c), unlike
            scikit-learn's string bandwidths (its issues #25623, #26658);
            ``"cv"``: the h maximising the leave-one-out log-likelihood (held-out
            likelihood), searched on a log grid around Scott's h and refined.
        cv_points: at most this many held-out points score each candidate h in "cv".
        seed: seeds the choice of the held-out points in "cv" (a local generator).

    >>> data = torch.tensor([0.1, 0.35, 0.4, 0.8, 0.9], dtype=torch.float64)
    >>> kde = KDE(data, bandwidth=0.1)          # the notes' Figura 6 setting
    >>> round(float(kde.log_prob(torch.tensor([0.4], dtype=torch.float64)).exp()), 4)
    1.5111
    """

    def __init__(
        self,
        data: Any,
        bandwidth: str | float = "scott",
        *,
        cv_points: int = 2000,
        seed: int = 0,
    ) -> None:
        dtype = data.dtype if isinstance(data, torch.Tensor) and data.is_floating_point() else None
        self.data = as_points(data, "data", dtype=dtype or torch.float64)
        n, d = self.data.shape
        cv_points = check_int(cv_points, "cv_points")
        seed = check_int(seed, "seed", low=0)
        if isinstance(bandwidth, str):
            rule = bandwidth.lower()
            if rule == "scott":
                h = _spread(self.data) * scott_factor(n, d)
            elif rule == "silverman":
                h = _spread(self.data) * silverman_factor(n, d)
            elif rule == "cv":
                h = self._cross_validate(cv_points, seed)
            else:
                raise ConfigurationError(
                    f"bandwidth must be a positive number or one of 'scott', 'silverman', "
                    f"'cv'; got {bandwidth!r}"
                )
            self.rule = rule
        else:
            if isinstance(bandwidth, bool):
                raise ConfigurationError(f"bandwidth must be a number, got {bandwidth!r}")
            check_positive(bandwidth, "bandwidth")
            h = float(bandwidth)
            self.rule = "fixed"
        self.bandwidth = float(h)

    @property
    def dim(self) -> int:
        return self.data.shape[1]

    def _cross_validate(self, cv_points: int, seed: int) -> float:
        """argmax_h of the mean leave-one-out log-likelihood (a grid, then a bounded refine)."""
        from scipy.optimize import minimize_scalar

        n, d = self.data.shape
        if n < 3:
            raise ShapeError(f"bandwidth='cv' needs at least 3 data points, got {n}")
        order = torch.randperm(n, generator=generator(seed)).to(self.data.device)
        data = self.data[order]  # held-out points first, so exclude_self drops (i, i)
        m = min(cv_points, n)
        h0 = _spread(self.data) * scott_factor(n, d)

        def score(hs: torch.Tensor) -> torch.Tensor:
            lp = _gaussian_kde_log_prob(data[:m], data, hs, exclude_self=True)
            return lp.mean(-1)

        grid = h0 * torch.logspace(-2, 1, 31, dtype=data.dtype, device=data.device)
        scores = score(grid)
        best = int(scores.argmax())
        lo = float(grid[max(best - 1, 0)].log())
        hi = float(grid[min(best + 1, len(grid) - 1)].log())
        result = minimize_scalar(
            lambda log_h: (
                -float(score(torch.tensor([math.exp(log_h)], dtype=data.dtype, device=data.device)))
            ),
            bounds=(lo, hi),
            method="bounded",
            options={"xatol": 1e-4},
        )
        return math.exp(result.x) if -result.fun >= float(scores[best]) else float(grid[best])

    def log_prob(self, x: Any) -> torch.Tensor:
        """log KDE(x) for each row of x (M, D) (or a vector of M points in 1-D): shape (M,).

        One log-sum-exp over the K kernels per query, chunked so memory stays bounded.
        """
        q = as_points(x, "x", dim=self.dim, dtype=self.data.dtype, device=self.data.device)
        h = torch.tensor([self.bandwidth], dtype=q.dtype, device=q.device)
        return _gaussian_kde_log_prob(q, self.data, h)[0]

    def score(self, x: Any) -> float:
        """Mean log-likelihood (1/M) sum_m log KDE(x_m) (the negative cross-entropy, eq. 45)."""
        return float(self.log_prob(x).mean())

    def sample(self, n: int, seed: int | None = None) -> torch.Tensor:
        """n draws, shape (n, D): pick a data point uniformly (eq. 13), then add N(0, h^2 I).

        ``seed`` seeds a local generator (the caller's random streams are not touched;
        ``None`` takes one draw from torch's global generator for its seed).
        """
        n = check_int(n, "n")
        check_allocation(2 * n * self.dim, self.data.dtype, f"KDE.sample({n})")
        g = generator(seed, self.data.device)
        idx = torch.randint(self.data.shape[0], (n,), generator=g, device=self.data.device)
        noise = torch.randn(
            n, self.dim, generator=g, dtype=self.data.dtype, device=self.data.device
        )
        return self.data[idx] + self.bandwidth * noise

    def graph(self) -> ModelGraph:
        """KDE as a Bayesian network: a uniform mixture over the K data points (eq. 14).

        k ~ Uniform{1, ..., K} picks a data point x^k (the "parameters" are the data
        themselves and the bandwidth h), then x | k ~ N(x^k, h^2 I): the mixture of
        Figura 2 with a fixed uniform prior and one component per sample.

        >>> KDE(torch.tensor([0.0, 1.0]), 0.5).graph().parents("x")
        ('k', 'data', 'h')
        """
        from pyrobn.graph import GraphNode, ModelGraph

        k = self.data.shape[0]
        return ModelGraph(
            [
                GraphNode("data", "parameter", label="x^1..x^K"),
                GraphNode("h", "parameter", label="h"),
                GraphNode("k", "latent", discrete=True, label=f"k ~ U{{1..{k}}}"),
                GraphNode("x", "observed", label="x"),
            ],
            [("k", "x"), ("data", "x"), ("h", "x")],
            plates={"data": (["k", "x"], "M")},
            title="KDE (eq. 14): a uniform mixture over the data",
        )

    def __repr__(self) -> str:
        k, d = self.data.shape
        return f"KDE(K={k}, D={d}, bandwidth={self.bandwidth:.4g} ({self.rule}))"


class EmpiricalDistribution:
    """The empirical distribution p_D(x) = (1/K) sum_k delta_{x^k}(x) (eq. 13).

    It puts mass (count of x in D)/K on the observed points and 0 elsewhere:
    ``log_prob`` is -inf off the data, ``sample`` resamples the data (the bootstrap).
    """

    def __init__(self, data: Any) -> None:
        dtype = data.dtype if isinstance(data, torch.Tensor) and data.is_floating_point() else None
        self.data = as_points(data, "data", dtype=dtype or torch.float64)
        self.support, counts = torch.unique(self.data, dim=0, return_counts=True)
        self.probs = counts.to(self.data.dtype) / self.data.shape[0]

    def log_prob(self, x: Any) -> torch.Tensor:
        """log p_D(x): log(count/K) where x is a data point, -inf elsewhere; shape (M,)."""
        d = self.data
        q = as_points(x, "x", dim=d.shape[1], dtype=d.dtype, device=d.device)
        match = (q.unsqueeze(1) == self.support.unsqueeze(0)).all(-1)  # (M, S)
        p = (match.to(self.probs.dtype) * self.probs).sum(-1)
        return p.log()

    def entropy(self) -> torch.Tensor:
        """H(p_D) = -sum_s p_s log p_s (eq. 43, discrete case): log K for distinct points."""
        return -(self.probs * self.probs.log()).sum()

    def sample(self, n: int, seed: int | None = None) -> torch.Tensor:
        """n draws with replacement from the data (a local generator seeded by ``seed``)."""
        n = check_int(n, "n")
        check_allocation(n * self.data.shape[1], self.data.dtype, f"sample({n})")
        g = generator(seed, self.data.device)
        idx = torch.randint(self.data.shape[0], (n,), generator=g, device=self.data.device)
        return self.data[idx]
