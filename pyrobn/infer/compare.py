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
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import torch
from pyro.distributions.transforms import biject_to
from pyro.infer import MCMC, NUTS, Trace_ELBO, TraceEnum_ELBO
from pyro.infer.autoguide import (
    AutoContinuous,
    AutoDelta,
    AutoGuide,
    AutoLaplaceApproximation,
    AutoLowRankMultivariateNormal,
    AutoMultivariateNormal,
    AutoNormal,
)
from pyro.ops.hessian import hessian
from pyro.optim import ClippedAdam
from pyro.poutine.util import prune_subsample_sites

from pyrobn.errors import ConfigurationError, ShapeError, UnknownVariableError
from pyrobn.infer.map import (
    _initialised,
    discrete_sites,
    guess_max_plate_nesting,
    model_callable,
    plate_nesting,
)
from pyrobn.infer.map import hide_discrete as hide_discrete_sites
from pyrobn.infer.svi import History, fit_svi
from pyrobn.validation import check_int, check_positive

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

    Example:
        >>> grid = torch.linspace(1e-4, 1 - 1e-4, 4001, dtype=torch.float64)
        >>> post = GridDensity(grid, log_prior(grid) + log_likelihood(grid))
    """

    arg_constraints: dict[str, Any] = {}  # noqa: RUF012 - torch's class attribute
    has_rsample = False

    def __init__(self, grid: torch.Tensor, log_density: torch.Tensor) -> None:
        if grid.dim() != 1 or grid.shape != log_density.shape or grid.numel() < 3:
            raise ShapeError(
                f"grid and log_density must be 1-D of one length >= 3, got "
                f"{tuple(grid.shape)} and {tuple(log_density.shape)}"
            )
        if bool((grid.diff() <= 0).any()):
            raise ConfigurationError("grid must be strictly increasing")
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


def gaussian_kl(
    loc_q: torch.Tensor, cov_q: torch.Tensor, loc_p: torch.Tensor, cov_p: torch.Tensor
) -> float:
    """KL(N(mq, Sq) || N(mp, Sp)) = 1/2 [tr(Sp^-1 Sq) + d^T Sp^-1 d - k + ln |Sp| / |Sq|]."""
    loc_q, cov_q = loc_q.double(), cov_q.double()
    loc_p, cov_p = loc_p.double().to(loc_q.device), cov_p.double().to(loc_q.device)
    chol_p = torch.linalg.cholesky(cov_p)
    diff = (loc_p - loc_q).unsqueeze(-1)
    trace = torch.cholesky_solve(cov_q, chol_p).diagonal().sum()
    mahalanobis = (diff.mT @ torch.cholesky_solve(diff, chol_p)).squeeze()
    logdet_p = 2 * chol_p.diagonal().log().sum()
    logdet_q = torch.linalg.slogdet(cov_q).logabsdet
    return float(0.5 * (trace + mahalanobis - loc_q.numel() + logdet_p - logdet_q))


# --------------------------------------------------------------------------- helpers
def hdi(draws: np.ndarray, prob: float = 0.94) -> np.ndarray:
    """Highest-density interval of each column: the shortest interval holding ``prob``.

    ``draws`` has shape (S, E); returns (E, 2). Same rule as ``arviz.hdi``.
    """
    sorted_draws = np.sort(draws, axis=0)
    n = sorted_draws.shape[0]
    inside = math.floor(prob * n)
    widths = sorted_draws[inside:] - sorted_draws[: n - inside]
    start = widths.argmin(0)
    columns = np.arange(sorted_draws.shape[1])
    return np.stack([sorted_draws[start, columns], sorted_draws[start + inside, columns]], -1)


def _vectorised_shape(value_shape: torch.Size, event_dim: int, n: int, nesting: int) -> tuple:
    batch = value_shape[: len(value_shape) - event_dim]
    pad = nesting - len(batch)
    if pad < 0:
        raise ShapeError(f"a site has {len(batch)} batch dims, more than max_plate_nesting")
    return (n,) + (1,) * pad + tuple(value_shape)


def _draw(
    fn: Callable[..., Any],
    sites: list[str],
    num: int,
    nesting: int,
    args: tuple,
    kwargs: dict,
) -> dict[str, torch.Tensor]:
    """``num`` joint draws of ``sites`` from ``fn`` (a guide), vectorised with a plate when
    the guide allows it, else one run per draw. Values have shape (num, *site shape)."""
    with torch.no_grad():
        single = poutine.trace(fn).get_trace(*args, **kwargs)
        shapes = {name: single.nodes[name]["value"].shape for name in sites}
        try:
            with pyro.plate(_DRAWS_PLATE, num, dim=-(nesting + 1)):
                batched = poutine.trace(fn).get_trace(*args, **kwargs)
            out = {}
            for name in sites:
                value = batched.nodes[name]["value"]
                target = (num, *shapes[name])
                if value.numel() != math.prod(target):
                    raise ShapeError(f"draws of {name!r} have shape {tuple(value.shape)}")
                out[name] = value.detach().reshape(target)
            return out
        except (RuntimeError, ValueError, ShapeError):
            runs = [poutine.trace(fn).get_trace(*args, **kwargs) for _ in range(num)]
            return {
                name: torch.stack([t.nodes[name]["value"].detach() for t in runs]) for name in sites
            }


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
    condition on one sampled value of them instead).
    """
    value = loss.differentiable_loss(model, guide, *args, **kwargs)
    H = hessian(value, guide.loc)
    with torch.no_grad():
        cov = torch.linalg.inv(H)
        scale = cov.diagonal().sqrt()
        correlation = cov / scale[:, None] / scale[None, :]
        scale_tril = torch.linalg.cholesky(correlation)
    gaussian = AutoMultivariateNormal(guide.model)
    gaussian._setup_prototype(*args, **kwargs)
    del gaussian.loc
    del gaussian.scale
    del gaussian.scale_tril
    gaussian.register_buffer("loc", guide.loc.detach().clone())
    gaussian.register_buffer("scale", scale)
    gaussian.register_buffer("scale_tril", scale_tril)
    return gaussian


def _elbo_estimate(
    model: Callable[..., Any], guide: Any, loss: Any, particles: int, args: tuple, kwargs: dict
) -> float:
    """ELBO = -mean of ``particles`` single-particle losses (vectorised when possible)."""
    with torch.no_grad():
        try:
            vec = type(loss)(
                num_particles=particles,
                vectorize_particles=True,
                max_plate_nesting=loss.max_plate_nesting,
            )
            return -float(vec.loss(model, guide, *args, **kwargs))
        except (RuntimeError, ValueError, NotImplementedError):
            return -float(
                np.mean([loss.loss(model, guide, *args, **kwargs) for _ in range(particles)])
            )


# --------------------------------------------------------------------------- results
@dataclass
class GuideResult:
    """One guide's outcome: draws, InferenceData, ELBO, wall time, KL to the reference."""

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


@dataclass
class GuideComparison:
    """What :func:`compare_guides` returns.

    ``table``: a pandas DataFrame, one row per (guide, site element), with columns
    ``elbo``, ``wall_time``, ``mean``, ``sd``, ``hdi_low``, ``hdi_high`` and, given a
    reference, ``ref_mean``, ``ref_sd``, ``mean_error``, ``sd_ratio``, ``kl``, ``kl_method``
    (KL(q || p_ref) of the whole site). ``idata[name]``: the guide's ``arviz.InferenceData``.
    """

    results: dict[str, GuideResult]
    table: Any
    sites: list[str]
    reference: dict[str, Reference] | None = None

    @property
    def idata(self) -> dict[str, Any]:
        return {name: result.idata for name, result in self.results.items()}

    def summary(self) -> Any:
        """One row per guide: ELBO, wall time and (with a reference) KL per site."""
        columns = ["elbo", "wall_time", *(["kl"] if "kl" in self.table else [])]
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
        return gaussian_kl(loc, cov, ref.mean.reshape(-1), ref_cov), method
    q_u = dist.MultivariateNormal(loc.double(), covariance_matrix=cov.double())
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
            intervals = hdi(flat, prob)
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
    seed: int = 0,
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
            on the model with its discrete sites hidden, and the Pyro param store is
            cleared before each guide (autoguides share parameter names).
        steps: SVI steps per guide (:func:`fit_svi`, Adam with the learning rate decaying
            from ``lr`` to ``final_lr``); ``num_particles`` ELBO particles per step.
        num_samples: posterior draws per guide (NUTS: per chain, after ``warmup_steps``,
            default ``num_samples``).
        reference: site -> the exact posterior of that site (a distribution with ``mean``,
            ``variance`` and ``log_prob``, e.g. ``BayesianLinearRegression.posterior`` or a
            :class:`GridDensity`), or a tensor of reference draws (moments only).
        elbo_particles: particles of the final ELBO estimate. For AutoDelta the "ELBO" is
            the log joint at the mode, log p(D, theta_MAP) (a point mass has no entropy).
        plate: the name of the data plate (for the pointwise log-likelihood).
        hide_discrete: hide discrete sites from autoguides (and sum them out); with
            ``False`` a model with discrete sites raises :class:`ConfigurationError`.

    Returns:
        a :class:`GuideComparison` (``.table``, ``.idata``, ``.summary()``, ``.loo()``,
        ``.plot_forest()``).

    Raises:
        ConfigurationError: an unknown guide name, a non-positive count or learning rate,
            an autoguide asked to cover discrete sites.
        UnknownVariableError: a reference for a site the model does not have.

    Example:
        >>> blr = pyrobn.BayesianLinearRegression(2, noise_scale=0.5, lam=1.0)
        >>> cmp = compare_guides(blr, {"normal": "normal", "mvn": "mvn", "nuts": "nuts"},
        ...                      X, y, reference={"theta": blr.posterior(X, y)})
        >>> cmp.table[["mean", "sd", "kl"]]
    """
    if not guides:
        raise ConfigurationError("guides is empty: give at least one name -> guide")
    check_int(steps, "steps")
    check_int(num_samples, "num_samples")
    check_int(num_chains, "num_chains")
    check_positive(lr, "lr")
    check_positive(final_lr, "final_lr")
    if not 0 < hdi_prob < 1:
        raise ConfigurationError(f"hdi_prob must lie in (0, 1), got {hdi_prob}")
    specs = {name: _resolve(name, spec) for name, spec in guides.items()}

    fn = model_callable(model)
    discrete = discrete_sites(fn, *args, **kwargs)
    nesting = plate_nesting(model, max_plate_nesting)
    if nesting is None:
        nesting = guess_max_plate_nesting(fn, *args, **kwargs)
    enumerated, hidden = hide_discrete_sites(fn, discrete)
    if discrete and not hide_discrete and any(kind == "auto" for kind, _ in specs.values()):
        raise ConfigurationError(
            f"the model has discrete latent sites {discrete}; an autoguide cannot cover them. "
            "Keep hide_discrete=True (they are hidden with poutine.block and summed out by "
            "TraceEnum_ELBO)"
        )
    with torch.no_grad(), poutine.block():
        trace = prune_subsample_sites(
            poutine.trace(_initialised(hidden)).get_trace(*args, **kwargs)
        )
    latent = [
        name
        for name, site in trace.nodes.items()
        if site["type"] == "sample" and not site["is_observed"] and name not in discrete
    ]
    supports = {name: trace.nodes[name]["fn"].support for name in latent}
    observed = [n for n, s in trace.nodes.items() if s["type"] == "sample" and s["is_observed"]]
    obs_name = observed[0] if len(observed) == 1 else plate
    if reference is not None:
        for site in reference:
            if site not in latent:
                raise UnknownVariableError(
                    f"reference names site {site!r}, which is not a continuous latent site of "
                    f"the model (sites: {latent})"
                )
    elbo_class = TraceEnum_ELBO if discrete else Trace_ELBO
    loss = elbo_class(
        max_plate_nesting=nesting,
        num_particles=num_particles,
        vectorize_particles=num_particles > 1,
    )

    results: dict[str, GuideResult] = {}
    for name, (kind, builder) in specs.items():
        pyro.clear_param_store()
        pyro.set_rng_seed(seed)
        if kind == "nuts":
            start = time.perf_counter()
            kernel = NUTS(enumerated, max_plate_nesting=nesting, jit_compile=False)
            mcmc = MCMC(
                kernel,
                num_samples=num_samples,
                warmup_steps=warmup_steps if warmup_steps is not None else num_samples,
                num_chains=num_chains,
                disable_progbar=not progress,
            )
            mcmc.run(*args, **kwargs)
            draws = {k: v.detach() for k, v in mcmc.get_samples().items() if k in latent}
            result = GuideResult(name, "NUTS", draws, None, math.nan, time.perf_counter() - start)
            chains = num_chains
        else:
            if kind == "auto":
                guide = builder(hidden)
            elif kind == "factory":
                guide = builder(hidden)
            else:
                guide = builder
            optim = ClippedAdam({"lr": lr, "lrd": (final_lr / lr) ** (1.0 / steps)})
            history = fit_svi(
                enumerated,
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
                guide = _laplace_gaussian(guide, enumerated, loss, args, kwargs)
                wall += time.perf_counter() - start
            draws = _draw(guide, latent, num_samples, nesting, args, kwargs)
            elbo = _elbo_estimate(
                enumerated,
                guide,
                loss,
                1 if method == "AutoDelta" else elbo_particles,
                args,
                kwargs,
            )
            result = GuideResult(name, method, draws, None, elbo, wall, guide, history)
            result.gaussian = _gaussian_site_marginals(guide, latent)
            chains = 1
        log_lik = pointwise_log_likelihood(
            enumerated, result.draws, *args, plate=plate, max_plate_nesting=nesting, **kwargs
        )
        result.idata = _inference_data(result.draws, log_lik, obs_name, chains)
        for site, ref in (reference or {}).items():
            result.kl[site], result.kl_method[site] = _kl_to_reference(
                result, site, ref, supports[site]
            )
        results[name] = result
    pyro.clear_param_store()
    reference_dict = dict(reference) if reference is not None else None
    return GuideComparison(
        results, _table(results, reference_dict, hdi_prob), latent, reference_dict
    )


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
