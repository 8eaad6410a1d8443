"""Information theory of the notes (2.4.3): information, entropy, cross-entropy, KL, JS.

    I(A) = -log_b Prob(A)                        (eq. 42; from eq. 40-41: I(A n B) = I(A) + I(B)
                                                  for independent events forces a logarithm)
    H(p) = E_p[-log p(x)]                        (eq. 43)
    CE(p, q) = E_p[-log q(x)]                    (eq. 44)
    CE(p, q) = H(p) + KL(p || q)                 (eq. 46)
    KL(p || q) = E_p[log p(x) / q(x)] >= 0       (eq. 47, Gibbs' inequality)
    d_JS(p, q)^2 = 1/2 KL(p || m) + 1/2 KL(q || m),  m = (p + q) / 2   (the Jensen-Shannon
                                                  distance the chapter cites beside the KL)

and with p = p_D the empirical distribution, CE(p_D, p_theta) = -(1/K) log p_theta(D)
(eq. 45), so maximum likelihood = minimum cross-entropy = minimum KL (eq. 48).

Each function takes either probability tables (tensors, arrays or lists whose last axis is
a distribution; exact), or two torch distributions: the closed form torch registers
(``Distribution.entropy``, ``torch.distributions.kl_divergence``: Gaussians, Laplace, Beta,
... ), else Monte Carlo, which returns a :class:`MonteCarloEstimate` (value and standard
error). Results are in nats (base e, the notes' choice); ``base=2`` gives bits (eq. 42:
the base only rescales, by 1 / log b).

The maximum-entropy facts of 2.4.3.1 follow: on n states H(p) <= log n, with equality for
the uniform table; on the real line, among densities of variance sigma^2,
H(p) <= 1/2 log(2 pi e sigma^2), with equality for the Gaussian (tutorial 05 and the tests
show both numerically).

>>> round(float(kl_divergence(torch.tensor([0.5, 0.5]), torch.tensor([0.9, 0.1]))), 4)
0.5108
>>> float(entropy([0.25, 0.25, 0.25, 0.25], base=2))               # two bits
2.0
>>> round(float(kl_divergence(dist.Normal(0., 1.), dist.Normal(1., 2.))), 4)  # closed form
0.4431
>>> kl_divergence(dist.Normal(0., 1.), dist.StudentT(3.), seed=0)  # doctest: +ELLIPSIS
MonteCarloEstimate(... +- ..., n=10000)
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.distributions import Distribution, MultivariateNormal, Normal

from pyrobn.errors import (
    ConfigurationError,
    NonFiniteError,
    OutOfSupportError,
    ShapeError,
)
from pyrobn.random import seeded
from pyrobn.validation import (
    check_allocation,
    check_distribution,
    check_finite,
    check_int,
    check_positive,
    to_real_tensor,
)

__all__ = [
    "MonteCarloEstimate",
    "cross_entropy",
    "entropy",
    "fit_gaussian_by_kl",
    "gaussian_cross_entropy",
    "gaussian_entropy",
    "gaussian_kl",
    "information",
    "js_distance",
    "js_divergence",
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

    def _scaled(self, factor: float) -> MonteCarloEstimate:
        return MonteCarloEstimate(self.value * factor, self.stderr * factor, self.num_samples)


# ------------------------------------------------------------------------- checks
def _log_base(base: Any) -> float:
    """log(base) for a real base > 1 (eq. 42: b = 2 bits, b = e nats)."""
    if isinstance(base, bool) or not isinstance(base, numbers.Real):
        raise ConfigurationError(f"base must be a real number > 1 (2: bits, e: nats), got {base!r}")
    if not math.isfinite(base) or base <= 1:
        raise ConfigurationError(f"base must be a finite number > 1 (2: bits, e: nats), got {base}")
    return math.log(base)


def _method(method: Any) -> str:
    if method not in ("auto", "exact", "mc"):
        raise ConfigurationError(f"method must be 'auto', 'exact' or 'mc', got {method!r}")
    return method


def _as_table(p: Any, name: str) -> torch.Tensor:
    """``p`` (tensor, array, list) as a floating table whose last axis is a distribution."""
    if isinstance(p, torch.Tensor):
        is_bool = p.dtype == torch.bool
    else:
        try:
            is_bool = np.asarray(p).dtype == bool
        except (ValueError, TypeError):  # ragged: to_real_tensor names the problem
            is_bool = False
    if is_bool:
        raise ConfigurationError(f"{name} must hold probabilities, got booleans")
    if isinstance(p, torch.Tensor) and not p.is_floating_point() and not p.is_complex():
        t = p.double()
    else:
        t = to_real_tensor(
            p,
            name,
            dtype=None if isinstance(p, torch.Tensor) else torch.float64,
            device=None if isinstance(p, torch.Tensor) else "cpu",
        )
    if t.dim() == 0:
        raise ShapeError(f"{name} must have a last axis holding a distribution, got a scalar")
    if t.shape[-1] == 0:
        raise ShapeError(f"{name} must have at least one state, got shape {tuple(t.shape)}")
    return check_distribution(t, name)


def _is_table(x: Any) -> bool:
    return not isinstance(x, Distribution)


def _tables(p: Any, q: Any) -> tuple[torch.Tensor, torch.Tensor]:
    pt, qt = _as_table(p, "p"), _as_table(q, "q")
    if pt.shape[-1] != qt.shape[-1]:
        raise ShapeError(
            f"p and q must be tables over one support: p has {pt.shape[-1]} states, "
            f"q has {qt.shape[-1]}"
        )
    try:
        torch.broadcast_shapes(pt.shape, qt.shape)
    except RuntimeError:
        raise ShapeError(
            f"the batch shapes of p {tuple(pt.shape[:-1])} and q {tuple(qt.shape[:-1])} "
            "do not broadcast"
        ) from None
    if pt.device != qt.device:
        raise ConfigurationError(f"p is on {pt.device} and q on {qt.device}")
    dtype = torch.promote_types(pt.dtype, qt.dtype)
    return pt.to(dtype), qt.to(dtype)


def _as_mvn(d: Distribution) -> Distribution:
    """A univariate Normal as a 1-D MultivariateNormal (to pair it with one)."""
    return MultivariateNormal(d.loc.unsqueeze(-1), scale_tril=d.scale[..., None, None])


def _distributions(p: Any, q: Any) -> tuple[Distribution, Distribution]:
    """Two distributions with one event shape (a Normal beside a 1-D MVN is lifted)."""
    if _is_table(p) or _is_table(q):
        kinds = ["a table" if _is_table(x) else type(x).__name__ for x in (p, q)]
        raise ConfigurationError(
            f"p and q must both be tables or both be distributions, got {kinds[0]} and {kinds[1]}"
        )
    if isinstance(p, Normal) and isinstance(q, MultivariateNormal):
        p = _as_mvn(p)
    if isinstance(q, Normal) and isinstance(p, MultivariateNormal):
        q = _as_mvn(q)
    if p.event_shape != q.event_shape:
        raise ShapeError(
            f"p and q must have one event shape: {tuple(p.event_shape)} vs {tuple(q.event_shape)}"
        )
    try:
        torch.broadcast_shapes(p.batch_shape, q.batch_shape)
    except RuntimeError:
        raise ShapeError(
            f"the batch shapes of p {tuple(p.batch_shape)} and q {tuple(q.batch_shape)} "
            "do not broadcast"
        ) from None
    return p, q


# ------------------------------------------------------------------- Monte Carlo
def _mc(values: torch.Tensor, n: int) -> MonteCarloEstimate:
    return MonteCarloEstimate(values.mean(0), values.std(0, unbiased=True) / math.sqrt(n), n)


def _draw(p: Distribution, n: int) -> torch.Tensor:
    """``n`` draws of ``p`` (the caller seeds), after a size check."""
    shape = p.batch_shape + p.event_shape
    check_allocation(n * math.prod(shape), torch.float64, f"{n} draws of {type(p).__name__}")
    return p.sample((n,))


def _evaluate(what: str, fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor):
    try:
        return fn(x)
    except (ValueError, RuntimeError) as exc:  # a support or shape torch refuses
        raise ConfigurationError(
            f"{what}: the distributions cannot be evaluated at each other's draws: {exc}"
        ) from None


def _exact_unavailable(what: str, p: Any, q: Any = None) -> ConfigurationError:
    names = type(p).__name__ + ("" if q is None else f", {type(q).__name__}")
    return ConfigurationError(
        f"no closed form for {what}({names}); use method='mc' (Monte Carlo with a standard error)"
    )


def _information(
    what: str,
    p: Any,
    q: Any,
    method: Any,
    num_samples: Any,
    seed: int | None,
    base: Any,
    *,
    table: Callable[[], torch.Tensor],
    registered: Callable[[Distribution, Distribution | None], torch.Tensor],
    integrand: Callable[[Distribution, Distribution | None, torch.Tensor], torch.Tensor],
) -> torch.Tensor | MonteCarloEstimate:
    """The one dispatch of H, CE and KL: tables exactly; a formula torch registers
    (``entropy``, ``kl_divergence``); else (or ``method="mc"``) E_p[integrand(x)] by
    Monte Carlo. Every result is divided by log(base)."""
    method = _method(method)
    scale = 1.0 / _log_base(base)
    n = check_int(num_samples, "num_samples")
    if (q is None and _is_table(p)) or (q is not None and _is_table(p) and _is_table(q)):
        return table() * scale
    if q is None:
        dp, dq = p, None
    else:
        dp, dq = _distributions(p, q)
    if method != "mc":
        try:
            return registered(dp, dq) * scale
        except NotImplementedError:
            if method == "exact":
                raise _exact_unavailable(what, dp, dq) from None
    with seeded(seed):
        x = _draw(dp, n)
    return _mc(_evaluate(what, lambda v: integrand(dp, dq, v), x), n)._scaled(scale)


# ---------------------------------------------------------------------- public API
def information(prob: Any, *, base: float = math.e) -> torch.Tensor:
    """The information of an event, I(A) = -log_b Prob(A) (notes eq. 42), in nats by default.

    The only continuous f with f(Prob(A) Prob(B)) = f(Prob(A)) + f(Prob(B)) for independent
    events (eq. 40-41) that is non-negative and zero for a sure event; ``base=2`` gives bits.
    ``prob`` is a probability or a tensor of them, each in [0, 1] (I = inf for 0).

    >>> information(0.5, base=2).item()
    1.0
    >>> bool(torch.isclose(information(0.5 * 0.2), information(0.5) + information(0.2)))
    True
    """
    if isinstance(prob, bool) or (isinstance(prob, torch.Tensor) and prob.dtype == torch.bool):
        raise ConfigurationError(f"prob must be a probability, got the boolean {prob!r}")
    t = to_real_tensor(
        prob,
        "prob",
        dtype=None if isinstance(prob, torch.Tensor) else torch.float64,
        device=None if isinstance(prob, torch.Tensor) else "cpu",
    )
    if not t.is_floating_point():
        t = t.double()
    check_finite(t, "prob")
    if bool(((t < 0) | (t > 1)).any()):
        bad = t[(t < 0) | (t > 1)][0]
        raise OutOfSupportError(f"prob must lie in [0, 1], got {float(bad)}")
    return -torch.log(t) / _log_base(base)


def entropy(
    p: Any,
    *,
    base: float = math.e,
    method: str = "auto",
    num_samples: int = 10_000,
    seed: int | None = None,
) -> torch.Tensor | MonteCarloEstimate:
    """H(p) = E_p[-log p(x)] (eq. 43), in nats (``base=2``: bits).

    A table: -sum_i p_i log p_i over the last axis (0 log 0 = 0). A distribution: torch's
    closed form ``p.entropy()`` (Gaussians: (D/2) log(2 pi e) + log det L), or with
    ``method="mc"`` (or when torch has none) the mean of -log p(x_s), x_s ~ p, and its
    standard error.

    >>> round(float(entropy(torch.tensor([0.5, 0.5]))), 6)                  # log 2
    0.693147
    """

    def table() -> torch.Tensor:
        pt = _as_table(p, "p")
        return -torch.special.xlogy(pt, pt).sum(-1)

    return _information(
        "entropy",
        p,
        None,
        method,
        num_samples,
        seed,
        base,
        table=table,
        registered=lambda dp, _: dp.entropy(),
        integrand=lambda dp, _, x: -dp.log_prob(x),
    )


def cross_entropy(
    p: Any,
    q: Any,
    *,
    base: float = math.e,
    method: str = "auto",
    num_samples: int = 10_000,
    seed: int | None = None,
) -> torch.Tensor | MonteCarloEstimate:
    """CE(p, q) = E_p[-log q(x)] (eq. 44) = H(p) + KL(p || q) (eq. 46), in nats.

    Tables: -sum_i p_i log q_i. Distributions: ``p.entropy() + kl_divergence(p, q)`` where
    torch has both in closed form; otherwise (or ``method="mc"``) the mean of -log q(x_s),
    x_s ~ p, with its standard error. With p the empirical distribution of data D,
    CE(p_D, q) = -(1/K) log q(D) (eq. 45).
    """

    def table() -> torch.Tensor:
        pt, qt = _tables(p, q)
        return -torch.special.xlogy(pt, qt).sum(-1)

    return _information(
        "cross_entropy",
        p,
        q,
        method,
        num_samples,
        seed,
        base,
        table=table,
        registered=lambda dp, dq: dp.entropy() + torch.distributions.kl_divergence(dp, dq),
        integrand=lambda _, dq, x: -dq.log_prob(x),
    )


def kl_divergence(
    p: Any,
    q: Any,
    *,
    base: float = math.e,
    method: str = "auto",
    num_samples: int = 10_000,
    seed: int | None = None,
) -> torch.Tensor | MonteCarloEstimate:
    """KL(p || q) = E_p[log p(x) - log q(x)] (eq. 47) >= 0, in nats.

    Tables: sum_i p_i (log p_i - log q_i) (+inf where q_i = 0 < p_i). Distributions: the
    formula torch registers (``torch.distributions.kl_divergence``: Gaussians, Laplace,
    Beta, ...; a Normal beside a 1-D MultivariateNormal is read as one); otherwise (or
    ``method="mc"``) the mean of log p(x_s) - log q(x_s), x_s ~ p, with its standard error.
    """

    def table() -> torch.Tensor:
        pt, qt = _tables(p, q)
        return (torch.special.xlogy(pt, pt) - torch.special.xlogy(pt, qt)).sum(-1)

    return _information(
        "kl_divergence",
        p,
        q,
        method,
        num_samples,
        seed,
        base,
        table=table,
        registered=lambda dp, dq: torch.distributions.kl_divergence(dp, dq),
        integrand=lambda dp, dq, x: dp.log_prob(x) - dq.log_prob(x),
    )


def js_divergence(
    p: Any,
    q: Any,
    *,
    base: float = math.e,
    num_samples: int = 10_000,
    seed: int | None = None,
) -> torch.Tensor | MonteCarloEstimate:
    """The Jensen-Shannon divergence 1/2 KL(p || m) + 1/2 KL(q || m), m = (p + q) / 2.

    Symmetric, finite (at most log 2 nats, 1 bit) and zero only for p = q; its square root
    is a distance (:func:`js_distance`, the d_JS the notes cite beside the KL, 2.4.3.2).
    Tables: exact. Distributions (no closed form, even for Gaussians): Monte Carlo with
    ``num_samples`` draws from each of p and q, log m = logaddexp(log p, log q) - log 2,
    returned as a :class:`MonteCarloEstimate`.

    >>> round(float(js_divergence([1.0, 0.0], [0.0, 1.0], base=2)), 6)   # disjoint: 1 bit
    1.0
    """
    scale = 1.0 / _log_base(base)
    n = check_int(num_samples, "num_samples")
    if _is_table(p) and _is_table(q):
        pt, qt = _tables(p, q)
        m = 0.5 * (pt + qt)
        kl_pm = (torch.special.xlogy(pt, pt) - torch.special.xlogy(pt, m)).sum(-1)
        kl_qm = (torch.special.xlogy(qt, qt) - torch.special.xlogy(qt, m)).sum(-1)
        return (0.5 * (kl_pm + kl_qm)).clamp_min(0.0) * scale
    dp, dq = _distributions(p, q)
    with seeded(seed):
        xp, xq = _draw(dp, n), _draw(dq, n)

    def log_ratio(d: Distribution, x: torch.Tensor) -> torch.Tensor:
        log_p, log_q = dp.log_prob(x), dq.log_prob(x)
        return d.log_prob(x) - (torch.logaddexp(log_p, log_q) - math.log(2.0))

    a = _evaluate("js_divergence", lambda x: log_ratio(dp, x), xp)
    b = _evaluate("js_divergence", lambda x: log_ratio(dq, x), xq)
    value = 0.5 * (a.mean(0) + b.mean(0))
    stderr = 0.5 * (a.var(0) / n + b.var(0) / n).sqrt()
    return MonteCarloEstimate(value * scale, stderr * scale, n)


def js_distance(
    p: Any,
    q: Any,
    *,
    base: float = math.e,
    num_samples: int = 10_000,
    seed: int | None = None,
) -> torch.Tensor | MonteCarloEstimate:
    """The Jensen-Shannon distance d_JS(p, q) = sqrt(:func:`js_divergence`) (notes 2.4.3.2).

    A metric on distributions (symmetric, zero only for p = q, triangle inequality), the
    same number as ``scipy.spatial.distance.jensenshannon(p, q, base=base)`` for tables.
    For distributions, a Monte Carlo estimate whose standard error is carried through the
    square root to first order (se / (2 d)).

    >>> round(float(js_distance([0.5, 0.5], [0.9, 0.1])), 6)
    0.318982
    """
    value = js_divergence(p, q, base=base, num_samples=num_samples, seed=seed)
    if isinstance(value, MonteCarloEstimate):
        d = value.value.clamp_min(0.0).sqrt()
        return MonteCarloEstimate(d, value.stderr / (2 * d), value.num_samples)
    return value.sqrt()


# ------------------------------------------------ deprecated closed forms (one release)
def _deprecated(name: str) -> None:
    warnings.warn(
        f"pyrobn.info.{name} is deprecated: use info.entropy / info.kl_divergence / "
        "info.cross_entropy on torch distributions (torch's registered closed forms)",
        DeprecationWarning,
        stacklevel=3,
    )


def gaussian_entropy(scale_tril: torch.Tensor) -> torch.Tensor:
    """Deprecated: ``MultivariateNormal(..., scale_tril=L).entropy()``."""
    _deprecated("gaussian_entropy")
    loc = scale_tril.new_zeros(scale_tril.shape[:-1])
    return MultivariateNormal(loc, scale_tril=scale_tril).entropy()


def gaussian_kl(
    mean_p: torch.Tensor, tril_p: torch.Tensor, mean_q: torch.Tensor, tril_q: torch.Tensor
) -> torch.Tensor:
    """Deprecated: ``torch.distributions.kl_divergence`` of two MultivariateNormals."""
    _deprecated("gaussian_kl")
    return torch.distributions.kl_divergence(
        MultivariateNormal(mean_p, scale_tril=tril_p), MultivariateNormal(mean_q, scale_tril=tril_q)
    )


def gaussian_cross_entropy(
    mean_p: torch.Tensor, tril_p: torch.Tensor, mean_q: torch.Tensor, tril_q: torch.Tensor
) -> torch.Tensor:
    """Deprecated: :func:`cross_entropy` of two MultivariateNormals."""
    _deprecated("gaussian_cross_entropy")
    p = MultivariateNormal(mean_p, scale_tril=tril_p)
    return p.entropy() + torch.distributions.kl_divergence(
        p, MultivariateNormal(mean_q, scale_tril=tril_q)
    )


# ------------------------------------------------------------------ Figura 16
def _check_grid(grid: Any) -> torch.Tensor:
    if grid is None:
        return torch.linspace(-10, 10, 4001, dtype=torch.float64)
    x = to_real_tensor(grid, "grid")
    if x.dim() != 1 or x.numel() < 3:
        raise ShapeError(f"grid must be 1-D with at least 3 points, got shape {tuple(x.shape)}")
    check_finite(x, "grid")
    steps = x.diff()
    if bool((steps <= 0).any()):
        raise ConfigurationError("grid must be strictly increasing")
    if bool(((steps - steps[0]).abs() > 1e-6 * steps[0].abs()).any()):
        raise ConfigurationError("grid must be evenly spaced (the KLs are Riemann sums on it)")
    return x


def fit_gaussian_by_kl(
    log_p: Callable[[torch.Tensor], torch.Tensor],
    direction: str,
    *,
    init: tuple[float, float] = (0.0, 1.0),
    grid: torch.Tensor | None = None,
    steps: int = 300,
) -> tuple[float, float]:
    """The 1-D Gaussian q = N(m, s^2) minimising KL(p || q) or KL(q || p) (Figura 16).

    ``log_p`` maps a tensor of points to log p (normalised on ``grid``); the
    divergences are computed by quadrature on ``grid`` (evenly spaced, default [-10, 10],
    4001 points) and minimised over (m, log s) with L-BFGS from ``init``.
    ``direction="forward"``: KL(p || q), mass-covering (moment matching);
    ``direction="reverse"``: KL(q || p), mode-seeking (locks onto one mode).
    Returns (m, s).

    >>> grid = torch.linspace(-15, 17, 801, dtype=torch.float64)
    >>> m, s = fit_gaussian_by_kl(lambda x: dist.Normal(1.0, 2.0).log_prob(x), "forward",
    ...                           grid=grid)
    >>> round(m, 3), round(s, 3)
    (1.0, 2.0)
    """
    if direction not in ("forward", "reverse"):
        raise ConfigurationError(f"direction must be 'forward' or 'reverse', got {direction!r}")
    if not callable(log_p):
        raise ConfigurationError(f"log_p must be a function of the grid points, got {log_p!r}")
    if not isinstance(init, tuple | list) or len(init) != 2:
        raise ConfigurationError(f"init must be a pair (mean, scale), got {init!r}")
    if isinstance(init[0], bool) or not isinstance(init[0], numbers.Real):
        raise ConfigurationError(f"init mean must be a real number, got {init[0]!r}")
    if not math.isfinite(init[0]):
        raise ConfigurationError(f"init mean must be finite, got {init[0]}")
    check_positive(init[1], "init scale")
    steps = check_int(steps, "steps")
    x = _check_grid(grid)
    dx = x[1] - x[0]
    lp = log_p(x)
    if not isinstance(lp, torch.Tensor) or lp.shape != x.shape:
        shape = tuple(lp.shape) if isinstance(lp, torch.Tensor) else type(lp).__name__
        raise ShapeError(
            f"log_p(grid) must be a tensor of the grid's shape {tuple(x.shape)}, got {shape}"
        )
    lp = lp.to(x.dtype)
    if bool(torch.isnan(lp).any()) or bool((lp == math.inf).any()):
        raise NonFiniteError("log_p(grid) holds NaN or +inf")
    if bool((lp == -math.inf).all()):
        raise NonFiniteError("log_p(grid) is -inf everywhere: p has no mass on the grid")
    lp = lp - torch.logsumexp(lp, 0) - dx.log()  # normalise on the grid
    p = lp.exp()
    m = torch.tensor(float(init[0]), dtype=x.dtype, requires_grad=True)
    log_s = torch.tensor(math.log(init[1]), dtype=x.dtype, requires_grad=True)
    opt = torch.optim.LBFGS([m, log_s], max_iter=steps, line_search_fn="strong_wolfe")

    def objective() -> torch.Tensor:
        opt.zero_grad()
        lq = Normal(m, log_s.exp()).log_prob(x)
        if direction == "forward":  # 0 log 0 = 0 where p vanishes
            value = torch.where(p > 0, p * (lp - lq), torch.zeros_like(p)).sum() * dx
        else:
            q = lq.exp()
            value = torch.where(q > 0, q * (lq - lp), torch.zeros_like(q)).sum() * dx
        value.backward()
        return value

    opt.step(objective)
    mean, scale = float(m.detach()), float(log_s.detach().exp())
    if not (math.isfinite(mean) and math.isfinite(scale) and scale > 0):
        raise NonFiniteError(
            f"the {direction} KL fit did not reach a finite Gaussian (m = {mean}, s = {scale}): "
            "p may vanish where q has mass (reverse KL is then infinite)"
        )
    return mean, scale
