"""Compare posterior approximations of one model: :func:`compare_guides`.

Variational inference (lecture: log p(x) = ELBO(q) + KL(q || p(theta | x))) trades exactness
for speed, and each guide family loses something different: ``AutoDelta`` keeps only the
mode (MAP, notes eq. 25-26), ``AutoNormal`` a diagonal Gaussian (it cannot see correlations
and under-estimates the marginal sds of correlated coefficients), ``AutoMultivariateNormal``
and ``AutoLowRankMultivariateNormal`` a full / low-rank Gaussian, ``AutoLaplaceApproximation``
a Gaussian at the mode with the inverse Hessian as covariance; NUTS is asymptotically exact
up to Monte Carlo error. :func:`compare_guides` trains each on the same model and data and
returns a :class:`GuideComparison`: a table (ELBO, wall time, per-element posterior mean, sd
and HDI, and, given a reference posterior, KL(q || p_ref) and the moment errors), one
``arviz.InferenceData`` per guide (posterior draws + pointwise log-likelihood, so
``arviz.loo`` works) and a forest plot.

Discrete latent sites are hidden from the autoguides (``poutine.block``) and summed out
exactly by enumeration (``config_enumerate`` + ``TraceEnum_ELBO``); NUTS sums them out too.

No side effects on the caller. Every autoguide the comparison builds registers its
parameters under a name of its own (:func:`pyrobn.infer.params.unique_name`), released when
its result is collected; parameters the comparison meets but did not create (the model's
own ``pyro.param``/``PyroParam``, a hand-written guide's) are trained for each guide, as SVI
does, and put back exactly as they were before the next guide and on return, and names the
comparison added to Pyro's param store for them are removed. Each guide runs under
:func:`pyrobn.random.seeded`, so the caller's random streams are untouched. The store is
never cleared.

The ecosystem does the work where it fits: posterior draws are ``pyro.infer.Predictive``
runs of the guide, the HDI is ``arviz.hdi``, Gaussian KLs are torch's registered
``kl_divergence``, and for models without enumerated sites the ELBO (and the importance-
sampled log evidence and its Pareto k-hat) come from one set of Pyro importance weights
(``pyro.infer.importance.vectorized_importance_weights``, ``arviz.psislw``). Pyro's
importance weights sample every site of the model, so for models with enumerated discrete
sites the ELBO is ``TraceEnum_ELBO``'s (which sums them out) and no IS estimate is given;
Pyro has no per-datum log-likelihood that sums out enumerated sites (its ELBOs contract to a
scalar), hence :func:`pointwise_log_likelihood`.
"""

from __future__ import annotations

import functools
import math
import numbers
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import torch
from pyro.distributions.transforms import biject_to
from pyro.infer import MCMC, NUTS, Predictive, Trace_ELBO, TraceEnum_ELBO
from pyro.infer.autoguide import (
    AutoContinuous,
    AutoDelta,
    AutoGuide,
    AutoLaplaceApproximation,
    AutoLowRankMultivariateNormal,
    AutoMultivariateNormal,
    AutoNormal,
)
from pyro.infer.importance import vectorized_importance_weights
from pyro.ops.hessian import hessian
from pyro.optim import ClippedAdam
from pyro.poutine.util import prune_subsample_sites

from pyrobn.errors import ConfigurationError, NonFiniteError, ShapeError, UnknownVariableError
from pyrobn.infer.map import (
    _initialised,
    discrete_sites,
    guess_max_plate_nesting,
    model_callable,
    model_errors,
    plate_nesting,
    positive_number,
)
from pyrobn.infer.map import hide_discrete as hide_discrete_sites
from pyrobn.infer.params import release_with, unique_name
from pyrobn.infer.svi import History, fit_svi
from pyrobn.random import forked, seeded
from pyrobn.validation import check_allocation, check_finite, check_int, to_real_tensor

#: guide names understood by :func:`compare_guides` (case-insensitive)
GUIDE_NAMES: dict[str, Any] = {
    "delta": AutoDelta,
    "autodelta": AutoDelta,
    "normal": AutoNormal,
    "autonormal": AutoNormal,
    "mvn": AutoMultivariateNormal,
    "automultivariatenormal": AutoMultivariateNormal,
    "lowrank": AutoLowRankMultivariateNormal,
    "autolowrankmultivariatenormal": AutoLowRankMultivariateNormal,
    "laplace": AutoLaplaceApproximation,
    "autolaplaceapproximation": AutoLaplaceApproximation,
    "nuts": "nuts",
}
_DRAWS_PLATE = "_pyrobn_draws"


# --------------------------------------------------------------------------- references
class GridDensity(dist.TorchDistribution):
    """A 1-D density known on a grid (exact posterior by quadrature), normalised by trapezoids.

    ``log_prob`` interpolates the density linearly (-inf outside the grid), ``mean`` and
    ``variance`` are trapezoid integrals, ``sample`` inverts the piecewise-linear CDF.

    Example (the posterior of a coin's bias after 7 heads in 10 tosses, flat prior):
        >>> grid = torch.linspace(1e-4, 1 - 1e-4, 4001, dtype=torch.float64)
        >>> post = GridDensity(grid, 7 * grid.log() + 3 * (1 - grid).log())
        >>> round(float(post.mean), 4)                         # Beta(8, 4): 8 / 12
        0.6667
    """

    arg_constraints: dict[str, Any] = {}  # noqa: RUF012 - torch's class attribute
    has_rsample = False

    def __init__(self, grid: torch.Tensor, log_density: torch.Tensor) -> None:
        grid = to_real_tensor(grid, "grid")
        log_density = to_real_tensor(log_density, "log_density").to(grid)
        if grid.dim() != 1 or grid.shape != log_density.shape or grid.numel() < 3:
            raise ShapeError(
                f"grid and log_density must be 1-D of one length >= 3, got "
                f"{tuple(grid.shape)} and {tuple(log_density.shape)}"
            )
        check_finite(grid, "grid")
        if bool((grid.diff() <= 0).any()):
            raise ConfigurationError("grid must be strictly increasing")
        if bool(torch.isnan(log_density).any()) or bool((log_density == math.inf).any()):
            raise NonFiniteError("log_density holds NaN or +inf")
        if bool((log_density == -math.inf).all()):
            raise NonFiniteError("log_density is -inf everywhere: no mass on the grid")
        density = (log_density - log_density.max()).exp()
        self.grid = grid
        self.density = density / torch.trapezoid(density, grid)
        segment = 0.5 * (self.density[1:] + self.density[:-1]) * grid.diff()
        self.cdf = torch.cat([grid.new_zeros(1), segment.cumsum(0)])
        super().__init__(torch.Size(), torch.Size(), validate_args=False)

    @property
    def support(self) -> Any:
        return dist.constraints.interval(float(self.grid[0]), float(self.grid[-1]))

    @property
    def mean(self) -> torch.Tensor:
        return torch.trapezoid(self.grid * self.density, self.grid)

    @property
    def variance(self) -> torch.Tensor:
        return torch.trapezoid((self.grid - self.mean) ** 2 * self.density, self.grid)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        value = value.to(self.grid)
        index = torch.searchsorted(self.grid, value.clamp(self.grid[0], self.grid[-1]))
        index = index.clamp(1, self.grid.numel() - 1)
        x0, x1 = self.grid[index - 1], self.grid[index]
        weight = (value - x0) / (x1 - x0)
        density = (1 - weight) * self.density[index - 1] + weight * self.density[index]
        inside = (value >= self.grid[0]) & (value <= self.grid[-1])
        return torch.where(inside, density.log(), torch.full_like(density, -math.inf))

    def sample(self, sample_shape: torch.Size | tuple[int, ...] = ()) -> torch.Tensor:
        u = torch.rand(torch.Size(sample_shape), dtype=self.grid.dtype, device=self.grid.device)
        u = u * self.cdf[-1]
        index = torch.searchsorted(self.cdf, u).clamp(1, self.grid.numel() - 1)
        c0, c1 = self.cdf[index - 1], self.cdf[index]
        x0, x1 = self.grid[index - 1], self.grid[index]
        return x0 + (u - c0) / (c1 - c0).clamp_min(1e-300) * (x1 - x0)


Reference = dist.Distribution | torch.Tensor


def _reference_moments(ref: Reference) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, sd) of a reference: a distribution (exact moments) or a tensor of draws."""
    if isinstance(ref, torch.Tensor):
        return ref.mean(0), ref.std(0)
    return ref.mean, ref.variance.sqrt()


def _reference_covariance(ref: Reference) -> torch.Tensor | None:
    """The full covariance of a Gaussian reference (flattened site), else None."""
    if isinstance(ref, (dist.MultivariateNormal, dist.LowRankMultivariateNormal)):
        return ref.covariance_matrix
    base = ref
    while isinstance(base, dist.Independent):
        base = base.base_dist
    if isinstance(base, dist.Normal):
        return torch.diag_embed(ref.variance.reshape(-1))
    return None


def _gaussian_kl(
    loc_q: torch.Tensor, cov_q: torch.Tensor, loc_p: torch.Tensor, cov_p: torch.Tensor
) -> float:
    """KL(N(mq, Sq) || N(mp, Sp)) by torch's registered ``kl_divergence`` (float64, q's
    device); +inf when Sq is singular (a point mass or a degenerate fit to draws)."""
    loc_q, cov_q = loc_q.double(), cov_q.double()
    loc_p, cov_p = loc_p.double().to(loc_q.device), cov_p.double().to(loc_q.device)
    p = dist.MultivariateNormal(loc_p, covariance_matrix=cov_p)
    try:
        q = dist.MultivariateNormal(loc_q, covariance_matrix=cov_q)
    except (ValueError, RuntimeError):  # not positive definite
        return math.inf
    return float(torch.distributions.kl_divergence(q, p))


def gaussian_kl(
    loc_q: torch.Tensor, cov_q: torch.Tensor, loc_p: torch.Tensor, cov_p: torch.Tensor
) -> float:
    """Deprecated: ``torch.distributions.kl_divergence`` of two ``MultivariateNormal``."""
    warnings.warn(
        "pyrobn.infer.compare.gaussian_kl is deprecated: use torch.distributions.kl_divergence",
        DeprecationWarning,
        stacklevel=2,
    )
    return _gaussian_kl(loc_q, cov_q, loc_p, cov_p)


# --------------------------------------------------------------------------- helpers
def _hdi(draws: np.ndarray, prob: float) -> np.ndarray:
    """``arviz.hdi`` of each column of ``draws`` (S, E): an (E, 2) array."""
    import arviz as az

    return np.asarray(az.hdi(draws[None], hdi_prob=prob)).reshape(draws.shape[1], 2)


def hdi(draws: np.ndarray, prob: float = 0.94) -> np.ndarray:
    """Deprecated: ``arviz.hdi`` (the shortest interval holding ``prob`` of each column)."""
    warnings.warn(
        "pyrobn.infer.compare.hdi is deprecated: use arviz.hdi", DeprecationWarning, stacklevel=2
    )
    return _hdi(np.asarray(draws), prob)


def _vectorised_shape(value_shape: torch.Size, event_dim: int, n: int, nesting: int) -> tuple:
    batch = value_shape[: len(value_shape) - event_dim]
    pad = nesting - len(batch)
    if pad < 0:
        raise ShapeError(f"a site has {len(batch)} batch dims, more than max_plate_nesting")
    return (n,) + (1,) * pad + tuple(value_shape)


def _draw(
    guide: Callable[..., Any], sites: list[str], num: int, args: tuple, kwargs: dict
) -> dict[str, torch.Tensor]:
    """``num`` joint draws of ``sites`` from the guide (``pyro.infer.Predictive``):
    vectorised when the guide allows it, else one run per draw. Values have shape
    (num, *site shape)."""
    with torch.no_grad():
        single = poutine.trace(guide).get_trace(*args, **kwargs)
    shapes = {name: single.nodes[name]["value"].shape for name in sites}
    try:
        draws = Predictive(guide, num_samples=num, return_sites=sites, parallel=True)(
            *args, **kwargs
        )
        out = {}
        for name in sites:
            value, target = draws[name], (num, *shapes[name])
            if value.numel() != math.prod(target):
                raise ShapeError(f"draws of {name!r} have shape {tuple(value.shape)}")
            out[name] = value.detach().reshape(target)
        return out
    except (RuntimeError, ValueError, ShapeError):
        draws = Predictive(guide, num_samples=num, return_sites=sites, parallel=False)(
            *args, **kwargs
        )
        return {name: draws[name].detach().reshape(num, *shapes[name]) for name in sites}


def pointwise_log_likelihood(
    model: Callable[..., Any],
    draws: Mapping[str, torch.Tensor],
    *args: Any,
    plate: str = "data",
    max_plate_nesting: int = 1,
    **kwargs: Any,
) -> torch.Tensor:
    """log p(x_n | theta_s) for every draw s and datum n, local discrete sites summed out.

    The model is conditioned on the draws (vectorised over a plate left of the model's
    plates) and run under parallel enumeration; the log factors of every site inside
    ``plate`` (observations and enumerated local latents) are added and the enumerated
    dims are log-sum-exp'ed away, which is the exact per-datum marginal likelihood.
    Returns a tensor of shape (S, N).
    """
    names = list(draws)
    num = next(iter(draws.values())).shape[0] if draws else 1
    with torch.no_grad(), poutine.block():
        single = poutine.trace(
            poutine.condition(model, data={k: v[0] for k, v in draws.items()})
        ).get_trace(*args, **kwargs)
    event_dims = {k: single.nodes[k]["fn"].event_dim for k in names}
    shaped = {
        k: v.reshape(_vectorised_shape(v.shape[1:], event_dims[k], num, max_plate_nesting))
        for k, v in draws.items()
    }
    return _pointwise(model, shaped, num, plate, max_plate_nesting, args, kwargs)


def _pointwise(
    model: Callable[..., Any],
    shaped: dict[str, torch.Tensor],
    num: int,
    plate: str,
    nesting: int,
    args: tuple,
    kwargs: dict,
) -> torch.Tensor:
    def batched(*a: Any, **k: Any) -> Any:
        with pyro.plate(_DRAWS_PLATE, num, dim=-(nesting + 1)):
            return poutine.condition(model, data=shaped)(*a, **k)

    with torch.no_grad(), poutine.block():
        enumerated = poutine.enum(batched, first_available_dim=-(nesting + 2))
        trace = prune_subsample_sites(poutine.trace(enumerated).get_trace(*args, **kwargs))
        trace.compute_log_prob()
    total: torch.Tensor | int = 0
    plate_dim = None
    for name, site in trace.nodes.items():
        if site["type"] != "sample" or name in shaped:
            continue
        frames = {f.name: f for f in site["cond_indep_stack"]}
        if plate not in frames:
            if site["is_observed"]:
                raise ConfigurationError(
                    f"observed site {name!r} is not inside the plate {plate!r}; pass the "
                    "name of the data plate as plate=..."
                )
            continue
        plate_dim = frames[plate].dim
        total = total + site["log_prob"]
    if plate_dim is None or not isinstance(total, torch.Tensor):
        raise ConfigurationError(f"the model has no observed site inside a plate {plate!r}")
    keep = nesting + 1
    if total.dim() > keep:
        total = total.logsumexp(dim=tuple(range(total.dim() - keep)))
    total = total.reshape((1,) * (keep - total.dim()) + tuple(total.shape))
    total = total.expand((num, *total.shape[1:]))
    total = total.movedim(plate_dim, -1)
    return total.reshape(num, -1, total.shape[-1]).sum(1)


# --------------------------------------------------------------------------- guides
@dataclass
class GuideFactory:
    """Marks a callable ``factory(model) -> guide``: built fresh on the (hidden) model."""

    factory: Callable[[Callable[..., Any]], Any]


def guide_factory(factory: Callable[[Callable[..., Any]], Any]) -> GuideFactory:
    """Mark ``factory(model) -> guide`` so that :func:`compare_guides` builds it per model."""
    return GuideFactory(factory)


def _resolve(name: str, spec: Any) -> tuple[str, Any]:
    """('nuts' | 'auto' | 'factory' | 'manual', builder) for one entry of ``guides``."""
    if isinstance(spec, str):
        key = spec.lower()
        if key not in GUIDE_NAMES:
            raise ConfigurationError(
                f"guide {name!r}: unknown guide name {spec!r}; known names are "
                f"{sorted(set(GUIDE_NAMES))} (or pass an AutoGuide class, a "
                "guide_factory(...) or a hand-written guide function)"
            )
        spec = GUIDE_NAMES[key]
        if spec == "nuts":
            return "nuts", None
    if isinstance(spec, type) and issubclass(spec, AutoGuide):
        return "auto", spec
    if isinstance(spec, functools.partial) and isinstance(spec.func, type):
        if issubclass(spec.func, AutoGuide):
            return "auto", spec
    if isinstance(spec, GuideFactory):
        return "factory", spec.factory
    if isinstance(spec, torch.distributions.Distribution):
        raise ConfigurationError(
            f"guide {name!r} is a distribution; a guide is a function of the model's arguments "
            "(or an AutoGuide class, a guide_factory(...), a guide name)"
        )
    if isinstance(spec, AutoGuide):
        raise ConfigurationError(
            f"guide {name!r} is an AutoGuide instance; pass its class (or "
            "functools.partial(cls, ...)) so it is built fresh for the model"
        )
    if callable(spec):
        return "manual", spec
    raise ConfigurationError(f"guide {name!r}: cannot use {spec!r} as a guide")


def _gaussian_site_marginals(
    guide: Any, sites: list[str]
) -> dict[str, tuple[torch.Tensor, torch.Tensor]] | None:
    """site -> (loc, cov) of q in the unconstrained space (flattened), for Gaussian guides."""
    with torch.no_grad():
        if isinstance(guide, AutoNormal):
            out = {}
            for name in sites:
                loc, scale = guide._get_loc_and_scale(name)
                out[name] = (
                    loc.detach().reshape(-1),
                    torch.diag_embed(scale.detach().reshape(-1) ** 2),
                )
            return out
        if isinstance(guide, AutoContinuous) and not isinstance(guide, AutoLaplaceApproximation):
            posterior = guide.get_posterior()
            if not hasattr(posterior, "covariance_matrix"):
                return None
            loc, cov = posterior.loc.detach(), posterior.covariance_matrix.detach()
            out, pos = {}, 0
            for name, _site in guide.prototype_trace.iter_stochastic_nodes():
                size = math.prod(guide._unconstrained_shapes[name])
                out[name] = (loc[pos : pos + size], cov[pos : pos + size, pos : pos + size])
                pos += size
            return {name: out[name] for name in sites if name in out}
    return None


def _laplace_gaussian(
    guide: AutoLaplaceApproximation, model: Callable[..., Any], loss: Any, args: tuple, kwargs: dict
) -> AutoMultivariateNormal:
    """The Laplace approximation N(mode, H^-1) of a trained ``AutoLaplaceApproximation``.

    H is the Hessian (in the unconstrained space) of the same loss that was trained, so
    enumerated discrete sites are summed out (Pyro's own ``laplace_approximation`` would
    condition on one sampled value of them instead). The Gaussian holds its moments as
    buffers under a name of its own, so it puts nothing in Pyro's param store.
    """
    value = loss.differentiable_loss(model, guide, *args, **kwargs)
    H = hessian(value, guide.loc)
    with torch.no_grad():
        cov = torch.linalg.inv(H)
        scale = cov.diagonal().sqrt()
        correlation = cov / scale[:, None] / scale[None, :]
        scale_tril = torch.linalg.cholesky(correlation)
    gaussian = AutoMultivariateNormal(guide.model)
    gaussian._pyro_name = unique_name("compare_laplace")
    gaussian._setup_prototype(*args, **kwargs)
    del gaussian.loc
    del gaussian.scale
    del gaussian.scale_tril
    gaussian.register_buffer("loc", guide.loc.detach().clone())
    gaussian.register_buffer("scale", scale)
    gaussian.register_buffer("scale_tril", scale_tril)
    return gaussian


@dataclass
class _Evidence:
    """The ELBO estimate and, from the same importance weights, log p(x) and k-hat."""

    elbo: float
    log_evidence_is: float = math.nan
    pareto_k: float = math.nan
    elbo_stderr: float = math.nan


def _importance(
    model: Callable[..., Any], guide: Any, particles: int, nesting: int, args: tuple, kwargs: dict
) -> _Evidence:
    """Pyro's importance weights log w_s = log p(x, theta_s) - log q(theta_s), theta_s ~ q:
    ELBO = mean_s log w_s, log p(x) ~ logsumexp_s log w_s - log S (a lower bound in
    expectation, tight as S grows), and PSIS's Pareto k-hat of the weights (``arviz.psislw``;
    below 0.7 the importance estimate is trustworthy)."""
    import arviz as az

    with torch.no_grad():
        log_w, _, _ = vectorized_importance_weights(
            model, guide, *args, num_samples=particles, max_plate_nesting=nesting, **kwargs
        )
    log_w = log_w.detach().double().reshape(-1)
    if log_w.numel() != particles or not bool(torch.isfinite(log_w).all()):
        raise ValueError("importance weights of the wrong shape or not finite")
    elbo = float(log_w.mean())
    log_evidence = float(torch.logsumexp(log_w, 0) - math.log(particles))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # arviz warns when k-hat is large: we report it
        _, k = az.psislw(log_w.cpu().numpy())
    stderr = float(log_w.std() / math.sqrt(particles))
    return _Evidence(elbo, log_evidence, float(k), stderr)


def _elbo_estimate(
    model: Callable[..., Any],
    guide: Any,
    loss: Any,
    particles: int,
    nesting: int,
    enumerated: bool,
    args: tuple,
    kwargs: dict,
) -> _Evidence:
    """ELBO (and, without enumerated sites, the IS log evidence and k-hat) of one guide.

    Without enumerated sites: :func:`_importance`. With them: ``TraceEnum_ELBO`` with
    ``particles`` vectorised particles (it sums the discrete sites out). A guide that cannot
    be vectorised falls back to the mean of ``particles`` single-particle losses.
    """
    if not enumerated and particles > 1:
        try:
            return _importance(model, guide, particles, nesting, args, kwargs)
        except (RuntimeError, ValueError, NotImplementedError):
            pass
    with torch.no_grad():
        try:
            vec = type(loss)(
                num_particles=particles,
                vectorize_particles=True,
                max_plate_nesting=loss.max_plate_nesting,
            )
            return _Evidence(-float(vec.loss(model, guide, *args, **kwargs)))
        except (RuntimeError, ValueError, NotImplementedError):
            losses = [loss.loss(model, guide, *args, **kwargs) for _ in range(particles)]
            return _Evidence(-float(np.mean(losses)))


# --------------------------------------------------------------------------- results
@dataclass
class GuideResult:
    """One guide's outcome: draws, InferenceData, ELBO, wall time, KL to the reference.

    ``elbo_stderr`` is the Monte Carlo standard error of ``elbo``, ``log_evidence_is`` the
    importance-sampled log p(x) with the guide as proposal and ``pareto_k`` PSIS's k-hat of
    those weights (all three NaN for NUTS, AutoDelta and models with enumerated sites);
    ``prefix`` is the name of the guide's parameters in Pyro's param
    store (released when this result is collected).
    """

    name: str
    method: str
    draws: dict[str, torch.Tensor]
    idata: Any
    elbo: float
    wall_time: float
    guide: Any = None
    history: History | None = None
    gaussian: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None
    kl: dict[str, float] = field(default_factory=dict)
    kl_method: dict[str, str] = field(default_factory=dict)
    log_evidence_is: float = math.nan
    pareto_k: float = math.nan
    elbo_stderr: float = math.nan
    prefix: str | None = None


@dataclass
class GuideComparison:
    """What :func:`compare_guides` returns.

    ``table``: a pandas DataFrame, one row per (guide, site element), with columns
    ``elbo``, ``elbo_stderr``, ``log_evidence_is``, ``pareto_k``, ``wall_time``, ``mean``, ``sd``,
    ``hdi_low``, ``hdi_high`` and, given a reference, ``ref_mean``, ``ref_sd``,
    ``mean_error``, ``sd_ratio``, ``kl``, ``kl_method`` (KL(q || p_ref) of the whole site).
    ``idata[name]``: the guide's ``arviz.InferenceData``.
    """

    results: dict[str, GuideResult]
    table: Any
    sites: list[str]
    reference: dict[str, Reference] | None = None

    @property
    def idata(self) -> dict[str, Any]:
        return {name: result.idata for name, result in self.results.items()}

    def summary(self) -> Any:
        """One row per guide: ELBO, IS log evidence, k-hat, wall time and (with a
        reference) KL per site."""
        columns = [
            "elbo",
            "elbo_stderr",
            "log_evidence_is",
            "pareto_k",
            "wall_time",
            *(["kl"] if "kl" in self.table else []),
        ]
        return self.table.groupby(level=["guide", "site"], sort=False)[columns].first()

    def loo(self, **kwargs: Any) -> Any:
        """``arviz.compare`` of the guides by PSIS-LOO (expected log predictive density)."""
        import arviz as az

        return az.compare(self.idata, ic="loo", **kwargs)

    def plot_forest(self, var_names: list[str] | None = None, **kwargs: Any) -> Any:
        """All guides side by side (``arviz.plot_forest``); returns the figure."""
        from pyrobn.plots.compare import forest

        return forest(self, var_names=var_names, **kwargs)


def _element_labels(site: str, shape: tuple[int, ...]) -> list[str]:
    if not shape:
        return [site]
    return [f"{site}[{','.join(str(i) for i in idx)}]" for idx in np.ndindex(*shape)]


def _elementwise(transform: Any) -> Any:
    """The elementwise transform under ``IndependentTransform`` wrappers, or None."""
    while isinstance(transform, dist.transforms.IndependentTransform):
        transform = transform.base_transform
    return transform if transform.event_dim == 0 else None


def _kl_to_reference(
    result: GuideResult, site: str, ref: Reference, support: Any
) -> tuple[float, str]:
    """KL(q || p_ref) for one site, with the method used."""
    if isinstance(ref, torch.Tensor):
        return math.nan, "no reference density"
    if result.method == "AutoDelta":
        return math.inf, "point mass"
    draws = result.draws[site]
    transform = _elementwise(biject_to(support))
    if transform is None:
        return math.nan, "unsupported support"
    flat_shape = (draws.shape[0], -1)
    ref_cov = _reference_covariance(ref)
    if result.gaussian is not None and site in result.gaussian:
        loc, cov = result.gaussian[site]
        method = "exact"
    else:
        unconstrained = transform.inv(draws).reshape(flat_shape).double()
        loc = unconstrained.mean(0)
        centred = unconstrained - loc
        cov = centred.T @ centred / max(1, unconstrained.shape[0] - 1)
        method = "Gaussian fit to draws"
    if ref_cov is not None and transform is dist.transforms.identity_transform:
        return _gaussian_kl(loc, cov, ref.mean.reshape(-1), ref_cov), method
    try:
        q_u = dist.MultivariateNormal(loc.double(), covariance_matrix=cov.double())
    except (ValueError, RuntimeError):  # a singular fit (e.g. too few draws)
        return math.inf, method + " (singular)"
    u = transform.inv(draws)
    log_q = (
        q_u.log_prob(u.reshape(flat_shape).double())
        - transform.log_abs_det_jacobian(u, draws).reshape(flat_shape).sum(-1).double()
    )
    log_p = ref.log_prob(draws).reshape(draws.shape[0], -1).sum(-1).double()
    return float((log_q - log_p).mean()), method + " (Monte Carlo)"


def _table(results: dict[str, GuideResult], reference: dict[str, Reference] | None, prob: float):
    import pandas as pd

    rows = []
    for name, result in results.items():
        for site, draws in result.draws.items():
            flat = draws.detach().reshape(draws.shape[0], -1).double().cpu().numpy()
            intervals = _hdi(flat, prob)
            labels = _element_labels(site, tuple(draws.shape[1:]))
            ref = None if reference is None else reference.get(site)
            if ref is not None:
                ref_mean, ref_sd = (
                    t.reshape(-1).double().cpu().numpy() for t in _reference_moments(ref)
                )
            for i, label in enumerate(labels):
                row = {
                    "guide": name,
                    "site": site,
                    "element": label,
                    "elbo": result.elbo,
                    "elbo_stderr": result.elbo_stderr,
                    "log_evidence_is": result.log_evidence_is,
                    "pareto_k": result.pareto_k,
                    "wall_time": result.wall_time,
                    "mean": flat[:, i].mean(),
                    "sd": flat[:, i].std(ddof=1) if flat.shape[0] > 1 else 0.0,
                    "hdi_low": intervals[i, 0],
                    "hdi_high": intervals[i, 1],
                }
                if ref is not None:
                    row.update(
                        ref_mean=ref_mean[i],
                        ref_sd=ref_sd[i],
                        mean_error=row["mean"] - ref_mean[i],
                        sd_ratio=row["sd"] / ref_sd[i],
                        kl=result.kl.get(site, math.nan),
                        kl_method=result.kl_method.get(site, ""),
                    )
                rows.append(row)
    return pd.DataFrame(rows).set_index(["guide", "site", "element"])


def _inference_data(
    draws: dict[str, torch.Tensor], log_lik: torch.Tensor, obs_name: str, chains: int
) -> Any:
    import arviz as az

    def by_chain(t: torch.Tensor) -> np.ndarray:
        array = t.detach().double().cpu().numpy()
        return array.reshape((chains, array.shape[0] // chains, *array.shape[1:]))

    return az.from_dict(
        posterior={k: by_chain(v) for k, v in draws.items()},
        log_likelihood={obs_name: by_chain(log_lik)},
    )


# --------------------------------------------------------------------------- side effects
def _owned_by(name: str, prefixes: set[str]) -> bool:
    return any(name == p or name.startswith(f"{p}.") for p in prefixes)


class _ForeignParams:
    """Parameters the comparison meets but did not create, kept as the caller had them.

    ``names_before`` is the param store's key set when the comparison starts; :meth:`save`
    records the values of the foreign parameters one run of the guide and the model meets
    (the model's, a hand-written guide's: every param site whose name is not under one of
    ``own``);
    :meth:`restore` copies them back in place and :meth:`forget_new` removes from the store
    the foreign names the comparison added (the caller's names are never removed).
    """

    def __init__(self, own: set[str]) -> None:
        self.own = own
        self.names_before = set(pyro.get_param_store().keys())
        self.saved: list[tuple[torch.Tensor, torch.Tensor]] = []

    def save(self, model: Callable[..., Any], guide: Any, args: tuple, kwargs: dict) -> None:
        """Record the foreign parameters one run of ``guide`` (if any) and of ``model``
        (replaying the guide's draws) meets: a plain forward pass, no ELBO."""
        with forked(), torch.no_grad(), poutine.trace(param_only=True) as capture:
            if guide is None:
                model(*args, **kwargs)
            else:
                guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
                poutine.replay(model, trace=guide_trace)(*args, **kwargs)
        self.saved = []
        for name, site in capture.trace.nodes.items():
            if site["type"] != "param" or _owned_by(name, self.own):
                continue
            tensor = site["value"].unconstrained()
            self.saved.append((tensor, tensor.detach().clone()))

    def restore(self) -> None:
        with torch.no_grad():
            for tensor, value in self.saved:
                tensor.copy_(value)
                tensor.grad = None

    def forget_new(self) -> None:
        store = pyro.get_param_store()
        for name in list(store.keys()):
            if name not in self.names_before and not _owned_by(name, self.own):
                del store[name]


def _name(guide: Any, prefix: str) -> Any:
    """Give a fresh autoguide the param-store name ``prefix`` (before its first run)."""
    if isinstance(guide, AutoGuide) and guide.prototype_trace is None:
        guide._pyro_name = prefix
        return prefix
    return None


def _check_options(
    guides: Any,
    reference: Any,
    hdi_prob: Any,
    plate: Any,
    counts: dict[str, Any],
    warmup_steps: Any,
    max_plate_nesting: Any,
    lrs: dict[str, Any],
) -> None:
    if not isinstance(guides, Mapping):
        raise ConfigurationError(
            f"guides must be a mapping name -> guide, got {type(guides).__name__}"
        )
    if not guides:
        raise ConfigurationError("guides is empty: give at least one name -> guide")
    for name in guides:
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"guide names must be non-empty strings, got {name!r}")
    for key, value in counts.items():
        check_int(value, key)
    if warmup_steps is not None:
        check_int(warmup_steps, "warmup_steps", low=0)
    if max_plate_nesting is not None:
        check_int(max_plate_nesting, "max_plate_nesting", low=0)
    for key, value in lrs.items():
        positive_number(value, key)
    if isinstance(hdi_prob, bool) or not isinstance(hdi_prob, numbers.Real):
        raise ConfigurationError(f"hdi_prob must be a number in (0, 1), got {hdi_prob!r}")
    if not 0 < hdi_prob < 1:
        raise ConfigurationError(f"hdi_prob must lie in (0, 1), got {hdi_prob}")
    if not isinstance(plate, str) or not plate:
        raise ConfigurationError(f"plate must be the name of the data plate, got {plate!r}")
    if reference is not None and not isinstance(reference, Mapping):
        raise ConfigurationError(
            f"reference must be a mapping site -> distribution or draws, got "
            f"{type(reference).__name__}"
        )


def _check_reference(
    reference: Mapping[str, Any], latent: list[str], shapes: dict[str, torch.Size]
) -> None:
    for site, ref in reference.items():
        if site not in latent:
            raise UnknownVariableError(
                f"reference names site {site!r}, which is not a continuous latent site of "
                f"the model (sites: {latent})"
            )
        if isinstance(ref, torch.Tensor):
            if ref.dim() != len(shapes[site]) + 1 or ref.shape[1:] != shapes[site]:
                raise ShapeError(
                    f"reference draws of {site!r} must have shape (S, *{tuple(shapes[site])}), "
                    f"got {tuple(ref.shape)}"
                )
            if ref.shape[0] < 2 or not ref.is_floating_point():
                raise ShapeError(f"reference draws of {site!r} must be >= 2 real draws")
        elif not isinstance(ref, torch.distributions.Distribution):
            raise ConfigurationError(
                f"reference of {site!r} must be a distribution or a tensor of draws, got "
                f"{type(ref).__name__}"
            )


# --------------------------------------------------------------------------- main entry
def compare_guides(
    model: Any,
    guides: Mapping[str, Any],
    *args: Any,
    steps: int = 2000,
    num_samples: int = 1000,
    reference: Mapping[str, Reference] | None = None,
    lr: float = 0.02,
    final_lr: float = 0.002,
    num_particles: int = 1,
    elbo_particles: int = 200,
    warmup_steps: int | None = None,
    num_chains: int = 1,
    max_plate_nesting: int | None = None,
    plate: str = "data",
    hide_discrete: bool = True,
    hdi_prob: float = 0.94,
    seed: int | None = 0,
    progress: bool = False,
    **kwargs: Any,
) -> GuideComparison:
    """Train every guide in ``guides`` on ``model(*args, **kwargs)`` and compare them.

    Args:
        model: a Pyro model or a pyrobn model (its ``model`` method).
        guides: name -> one of ``"nuts"``, ``"delta"``, ``"normal"``, ``"mvn"``,
            ``"lowrank"``, ``"laplace"`` (or the AutoGuide class names), an AutoGuide class
            or ``functools.partial`` of one, ``guide_factory(lambda model: ...)``, or a
            hand-written guide with the model's signature. Each autoguide is built fresh
            on the model with its discrete sites hidden and its parameters under a name of
            its own. A hand-written guide starts from its parameters' current values (or
            their initial values when the store has none) and gets them back afterwards.
        steps: SVI steps per guide (:func:`fit_svi`, Adam with the learning rate decaying
            from ``lr`` to ``final_lr``); ``num_particles`` ELBO particles per step.
        num_samples: posterior draws per guide (NUTS: per chain, after ``warmup_steps``,
            default ``num_samples``).
        reference: site -> the exact posterior of that site (a distribution with ``mean``,
            ``variance`` and ``log_prob``, e.g. ``BayesianLinearRegression.posterior`` or a
            :class:`GridDensity`), or a tensor of reference draws (moments only).
        elbo_particles: particles of the final ELBO estimate (and of the importance-sampled
            log evidence). For AutoDelta the "ELBO" is the log joint at the mode,
            log p(D, theta_MAP) (a point mass has no entropy).
        plate: the name of the data plate (for the pointwise log-likelihood).
        hide_discrete: hide discrete sites from autoguides (and sum them out); with
            ``False`` a model with discrete sites raises :class:`ConfigurationError`.
        seed: each guide runs under :func:`pyrobn.random.seeded` (``None``: the caller's
            streams); the caller's random states are the same afterwards.

    Returns:
        a :class:`GuideComparison` (``.table``, ``.idata``, ``.summary()``, ``.loo()``,
        ``.plot_forest()``).

    Raises:
        ConfigurationError: an unknown guide name, a non-positive count or learning rate,
            an autoguide asked to cover discrete sites, a model that fails on the data.
        UnknownVariableError: a reference for a site the model does not have.
        SizeLimitError: draws or pointwise log-likelihoods past the memory budget.

    Example (the Laplace approximation is exact for a Gaussian posterior; the diagonal
    AutoNormal is not, once the features correlate):
        >>> g = torch.Generator().manual_seed(0)
        >>> X = torch.randn(40, 2, generator=g, dtype=torch.float64)
        >>> X[:, 1] = 0.9 * X[:, 0] + 0.4 * X[:, 1]
        >>> y = X @ torch.tensor([1.0, -1.0]).double() + 0.5 * torch.randn(
        ...     40, generator=g, dtype=torch.float64)
        >>> blr = pyrobn.BayesianLinearRegression(2, noise_scale=0.5, lam=1.0)
        >>> cmp = compare_guides(blr, {"normal": "normal", "laplace": "laplace"}, X, y,
        ...                      steps=300, lr=0.05, num_samples=100, elbo_particles=50,
        ...                      reference={"theta": blr.posterior(X, y)})
        >>> kl = cmp.summary()["kl"]
        >>> bool(kl["laplace"].item() < 1e-3 < kl["normal"].item())
        True
    """
    _check_options(
        guides,
        reference,
        hdi_prob,
        plate,
        {
            "steps": steps,
            "num_samples": num_samples,
            "num_chains": num_chains,
            "num_particles": num_particles,
            "elbo_particles": elbo_particles,
        },
        warmup_steps,
        max_plate_nesting,
        {"lr": lr, "final_lr": final_lr},
    )
    if seed is not None:
        check_int(seed, "seed", low=0)
    specs = {name: _resolve(name, spec) for name, spec in guides.items()}
    fn = model_callable(model)
    own: set[str] = set()
    foreign = _ForeignParams(own)
    try:
        return _compare(
            model, fn, specs, args, kwargs, own, foreign,
            steps=steps, num_samples=num_samples, reference=reference, lr=lr,
            final_lr=final_lr, num_particles=num_particles, elbo_particles=elbo_particles,
            warmup_steps=warmup_steps, num_chains=num_chains,
            max_plate_nesting=max_plate_nesting, plate=plate, hide_discrete=hide_discrete,
            hdi_prob=hdi_prob, seed=seed, progress=progress,
        )  # fmt: skip
    finally:
        foreign.forget_new()


def _compare(
    model: Any,
    fn: Callable[..., Any],
    specs: dict[str, tuple[str, Any]],
    args: tuple,
    kwargs: dict,
    own: set[str],
    foreign: _ForeignParams,
    *,
    steps: int,
    num_samples: int,
    reference: Mapping[str, Reference] | None,
    lr: float,
    final_lr: float,
    num_particles: int,
    elbo_particles: int,
    warmup_steps: int | None,
    num_chains: int,
    max_plate_nesting: int | None,
    plate: str,
    hide_discrete: bool,
    hdi_prob: float,
    seed: int | None,
    progress: bool,
) -> GuideComparison:
    with seeded(seed), model_errors("compare_guides"):
        discrete = discrete_sites(fn, *args, **kwargs)
        nesting = plate_nesting(model, max_plate_nesting)
        if nesting is None:
            nesting = guess_max_plate_nesting(fn, *args, **kwargs)
        enumerated, hidden = hide_discrete_sites(fn, discrete)
        with torch.no_grad(), poutine.block():
            trace = prune_subsample_sites(
                poutine.trace(_initialised(hidden)).get_trace(*args, **kwargs)
            )
            trace.compute_log_prob()  # the data's shapes and support, checked before training
    if discrete and not hide_discrete and any(kind == "auto" for kind, _ in specs.values()):
        raise ConfigurationError(
            f"the model has discrete latent sites {discrete}; an autoguide cannot cover them. "
            "Keep hide_discrete=True (they are hidden with poutine.block and summed out by "
            "TraceEnum_ELBO)"
        )
    latent = [
        name
        for name, site in trace.nodes.items()
        if site["type"] == "sample" and not site["is_observed"] and name not in discrete
    ]
    supports = {name: trace.nodes[name]["fn"].support for name in latent}
    shapes = {name: trace.nodes[name]["value"].shape for name in latent}
    observed = [n for n, s in trace.nodes.items() if s["type"] == "sample" and s["is_observed"]]
    obs_name = observed[0] if len(observed) == 1 else plate
    if reference is not None:
        _check_reference(reference, latent, shapes)
    chains_total = num_chains if any(kind == "nuts" for kind, _ in specs.values()) else 1
    draws_size = num_samples * chains_total * sum(math.prod(s) for s in shapes.values())
    check_allocation(draws_size, torch.float64, f"{num_samples} posterior draws per guide")
    n_data = sum(trace.nodes[n]["value"].numel() for n in observed)
    check_allocation(
        num_samples * chains_total * max(n_data, 1), torch.float64, "the pointwise log-likelihood"
    )
    elbo_class = TraceEnum_ELBO if discrete else Trace_ELBO
    loss = elbo_class(
        max_plate_nesting=nesting,
        num_particles=num_particles,
        vectorize_particles=num_particles > 1,
    )

    results: dict[str, GuideResult] = {}
    for name, (kind, builder) in specs.items():
        with seeded(seed), model_errors(f"compare_guides, guide {name!r}"):
            if kind == "nuts":
                foreign.save(enumerated, None, args, kwargs)
                try:
                    result, chains = _run_nuts(
                        name, enumerated, latent, nesting, num_samples, warmup_steps,
                        num_chains, progress, args, kwargs,
                    )  # fmt: skip
                    _finish(result, enumerated, nesting, plate, obs_name, chains, args, kwargs)
                finally:
                    foreign.restore()
            else:
                guide = builder(hidden) if kind in ("auto", "factory") else builder
                prefix = _name(guide, unique_name("compare"))
                if prefix is not None:
                    own.add(prefix)
                    release_with(guide, prefix)
                foreign.save(enumerated, guide, args, kwargs)
                try:
                    result = _run_svi(
                        name, enumerated, guide, loss, latent, nesting, bool(discrete),
                        steps=steps, lr=lr, final_lr=final_lr, num_samples=num_samples,
                        elbo_particles=elbo_particles, seed=seed, progress=progress,
                        args=args, kwargs=kwargs,
                    )  # fmt: skip
                    result.prefix = prefix
                    _finish(result, enumerated, nesting, plate, obs_name, 1, args, kwargs)
                finally:
                    foreign.restore()
        for site, ref in (reference or {}).items():
            result.kl[site], result.kl_method[site] = _kl_to_reference(
                result, site, ref, supports[site]
            )
        results[name] = result
    reference_dict = dict(reference) if reference is not None else None
    return GuideComparison(
        results, _table(results, reference_dict, hdi_prob), latent, reference_dict
    )


def _run_nuts(
    name: str,
    model: Callable[..., Any],
    latent: list[str],
    nesting: int,
    num_samples: int,
    warmup_steps: int | None,
    num_chains: int,
    progress: bool,
    args: tuple,
    kwargs: dict,
) -> tuple[GuideResult, int]:
    start = time.perf_counter()
    kernel = NUTS(model, max_plate_nesting=nesting, jit_compile=False)
    mcmc = MCMC(
        kernel,
        num_samples=num_samples,
        warmup_steps=warmup_steps if warmup_steps is not None else num_samples,
        num_chains=num_chains,
        disable_progbar=not progress,
    )
    mcmc.run(*args, **kwargs)
    draws = {k: v.detach() for k, v in mcmc.get_samples().items() if k in latent}
    return GuideResult(name, "NUTS", draws, None, math.nan, time.perf_counter() - start), num_chains


def _run_svi(
    name: str,
    model: Callable[..., Any],
    guide: Any,
    loss: Any,
    latent: list[str],
    nesting: int,
    enumerated: bool,
    *,
    steps: int,
    lr: float,
    final_lr: float,
    num_samples: int,
    elbo_particles: int,
    seed: int | None,
    progress: bool,
    args: tuple,
    kwargs: dict,
) -> GuideResult:
    optim = ClippedAdam({"lr": lr, "lrd": (final_lr / lr) ** (1.0 / steps)})
    history = fit_svi(
        model,
        guide,
        *args,
        loss=loss,
        optim=optim,
        steps=steps,
        progress=progress,
        seed=seed,
        description=name,
        **kwargs,
    )
    wall = history.wall_time
    method = type(guide).__name__ if isinstance(guide, AutoGuide) else "hand-written"
    if isinstance(guide, AutoLaplaceApproximation):
        start = time.perf_counter()
        guide = _laplace_gaussian(guide, model, loss, args, kwargs)
        wall += time.perf_counter() - start
    draws = _draw(guide, latent, num_samples, args, kwargs)
    particles = 1 if method == "AutoDelta" else elbo_particles
    evidence = _elbo_estimate(model, guide, loss, particles, nesting, enumerated, args, kwargs)
    result = GuideResult(name, method, draws, None, evidence.elbo, wall, guide, history)
    result.log_evidence_is, result.pareto_k = evidence.log_evidence_is, evidence.pareto_k
    result.elbo_stderr = evidence.elbo_stderr
    result.gaussian = _gaussian_site_marginals(guide, latent)
    return result


def _finish(
    result: GuideResult,
    model: Callable[..., Any],
    nesting: int,
    plate: str,
    obs_name: str,
    chains: int,
    args: tuple,
    kwargs: dict,
) -> None:
    """The pointwise log-likelihood at the guide's draws and its InferenceData."""
    log_lik = pointwise_log_likelihood(
        model, result.draws, *args, plate=plate, max_plate_nesting=nesting, **kwargs
    )
    result.idata = _inference_data(result.draws, log_lik, obs_name, chains)


__all__ = [
    "GUIDE_NAMES",
    "GridDensity",
    "GuideComparison",
    "GuideFactory",
    "GuideResult",
    "compare_guides",
    "gaussian_kl",
    "guide_factory",
    "hdi",
    "pointwise_log_likelihood",
]
