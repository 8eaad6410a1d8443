"""Priors on network weights and MAP estimation through ``AutoDelta`` (notes 2.3.1).

MAP (eq. 25-26) picks the mode of the posterior over the parameters,

    theta_MAP = argmax_theta  log p(D | theta) + log p(theta).

With the Gaussian prior p(theta) = N(0, lam^-1 I) the log prior is -(lam/2) ||theta||^2 + const
(eq. 27): MAP is maximum likelihood with l2 regularisation, PyTorch's ``weight_decay``
(2.3.1.1). The Laplace prior Laplace(0, 1/lam) gives -lam ||theta||_1 + const: the LASSO.
A flat prior p(theta) ∝ 1 gives back the MLE (eq. 28).

:func:`weight_decay_prior` turns every parameter of a module into a Pyro sample site with
such a prior (one line for any model of the package); :func:`map_estimate` fits an
``AutoDelta`` guide (a point mass whose ELBO is log p(D, theta)) with
:func:`pyrobn.infer.fit_svi` and returns the point.

Scaling between the prior and ``torch.optim``'s ``weight_decay`` (a coupled l2 term
``wd * theta`` added to the gradient): minimising the *mean* negative log-likelihood
(1/N) sum_k -log p(y^k | x^k, theta) (the notes' normalised NLL, 2.4.4) with
``weight_decay = lam / N`` has the same minimiser as MAP with N(0, 1/lam); for a linear
model with noise scale s and the loss ``0.5 * mean((y - X theta)^2)`` the matching value
is ``weight_decay = s^2 lam / N``, and with ``mean((y - X theta)^2)`` it is
``2 s^2 lam / N``. For the Laplace prior, scikit-learn's ``Lasso`` (objective
(1/2N) ||y - X theta||^2 + alpha ||theta||_1) matches at ``alpha = s^2 lam / N``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import torch
from pyro.infer import ELBO, Trace_ELBO, TraceEnum_ELBO, config_enumerate
from pyro.infer.autoguide import AutoDelta
from pyro.infer.autoguide.initialization import InitMessenger, init_to_median, init_to_value
from pyro.nn import PyroSample
from pyro.nn.module import to_pyro_module_
from pyro.optim import ClippedAdam, PyroOptim

from pyrobn.errors import ConfigurationError, ConvergenceWarning
from pyrobn.infer.params import release_with, unique_name
from pyrobn.infer.svi import History, fit_svi
from pyrobn.random import seeded
from pyrobn.validation import check_int, check_positive

#: buffer prefix holding a parameter's value at the moment it became a sample site
_INIT_PREFIX = "_prior_init_"
PRIOR_KINDS = ("normal", "laplace")


def parameter_prior(reference: torch.Tensor, lam: float, kind: str) -> dist.Distribution:
    """N(0, 1/lam) or Laplace(0, 1/lam) over a tensor shaped like ``reference`` (one event).

    ``kind="normal"``: density ∝ exp(-(lam/2) ||theta||^2) (eq. 27, weight decay);
    ``kind="laplace"``: density ∝ exp(-lam ||theta||_1) (the LASSO). The distribution
    lives on ``reference``'s device and dtype.
    """
    loc = torch.zeros_like(reference)
    if kind == "normal":
        base = dist.Normal(loc, lam**-0.5)
    elif kind == "laplace":
        base = dist.Laplace(loc, 1.0 / lam)
    else:
        raise ConfigurationError(f"prior kind must be one of {PRIOR_KINDS}, got {kind!r}")
    return base.to_event(reference.dim())


def _check_kind_and_lam(lam: float, kind: str) -> None:
    if kind not in PRIOR_KINDS:
        raise ConfigurationError(f"prior kind must be one of {PRIOR_KINDS}, got {kind!r}")
    if isinstance(lam, bool) or not isinstance(lam, (int, float)):
        raise ConfigurationError(f"lam must be a positive number, got {lam!r}")
    check_positive(float(lam), "lam (prior precision)")


def weight_decay_prior(
    module: torch.nn.Module,
    lam: float,
    kind: str = "normal",
    *,
    exclude: Callable[[str], bool] | None = None,
) -> torch.nn.Module:
    """Give every parameter of ``module`` the prior N(0, 1/lam) or Laplace(0, 1/lam), in place.

    The module (and, recursively, its submodules) becomes a ``PyroModule``; each parameter
    becomes a ``PyroSample`` site named by its Pyro path (``"<module name>.weight"``), so
    running the module inside a model samples it from the prior and a guide can put a
    posterior on it. MAP with the Normal prior is weight decay (notes eq. 27, 2.3.1.1),
    with the Laplace prior the LASSO. The current parameter values are kept (as
    non-persistent buffers) so :func:`map_estimate` starts from them; the priors follow
    the module's device through ``.to()``.

    Args:
        module: any ``torch.nn.Module`` (a ``PyroModule`` or a plain one).
        lam: the prior precision lambda > 0 (Normal: variance 1/lam; Laplace: scale 1/lam).
        kind: ``"normal"`` (l2, weight decay) or ``"laplace"`` (l1, LASSO).
        exclude: a predicate on the dotted parameter name (``"net.0.bias"``); parameters
            it accepts stay ordinary (learned, flat prior). Constrained ``PyroParam``
            parameters (a guide's scales, say) are always left alone.

    Returns:
        ``module`` itself.

    Raises:
        ConfigurationError: lam is not a positive finite number, or kind is unknown.

    Example:
        >>> net = weight_decay_prior(torch.nn.Linear(3, 1), lam=10.0)
        >>> point = map_estimate(lambda x, y: pyro.sample(
        ...     "y", dist.Normal(net(x).squeeze(-1), 1.0).to_event(1), obs=y), x, y)
    """
    _check_kind_and_lam(lam, kind)
    if not isinstance(module, torch.nn.Module):
        raise ConfigurationError(f"weight_decay_prior needs a torch.nn.Module, got {module!r}")
    to_pyro_module_(module, recurse=True)
    lam = float(lam)
    for prefix, sub in module.named_modules():
        constrained = {f"{n}_unconstrained" for n in sub.__dict__.get("_pyro_params", {})}
        for name, param in list(sub.named_parameters(recurse=False)):
            dotted = f"{prefix}.{name}" if prefix else name
            if name in constrained or (exclude is not None and exclude(dotted)):
                continue
            init = param.detach().clone()
            setattr(sub, name, PyroSample(_prior_factory(name, lam, kind)))
            sub.register_buffer(_INIT_PREFIX + name, init, persistent=False)
    return module


def _prior_factory(name: str, lam: float, kind: str) -> Callable[[Any], dist.Distribution]:
    def prior(owner: Any) -> dist.Distribution:
        return parameter_prior(getattr(owner, _INIT_PREFIX + name), lam, kind)

    return prior


def prior_init_values(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Site name -> the value the parameter had when :func:`weight_decay_prior` converted it."""
    values = {}
    for sub in module.modules():
        pyro_name = sub.__dict__.get("_pyro_name", "")
        for name, buffer in sub.named_buffers(recurse=False):
            if name.startswith(_INIT_PREFIX):
                site = name[len(_INIT_PREFIX) :]
                values[f"{pyro_name}.{site}" if pyro_name else site] = buffer
    return values


def model_callable(model: Any) -> Callable[..., Any]:
    """The function to trace: ``model.model`` for a pyrobn model, else ``model`` itself."""
    inner = getattr(model, "model", None)
    if isinstance(model, torch.nn.Module) and callable(inner):
        return inner
    if not callable(model):
        raise ConfigurationError(f"model must be callable, got {model!r}")
    return model


def discrete_sites(model: Callable[..., Any], *args: Any, **kwargs: Any) -> list[str]:
    """Names of the latent sample sites with discrete (enumerable) support in one model run."""
    with torch.no_grad(), poutine.block():
        trace = poutine.trace(_initialised(model)).get_trace(*args, **kwargs)
    return [
        name
        for name, site in trace.nodes.items()
        if site["type"] == "sample"
        and not site["is_observed"]
        and getattr(site["fn"], "has_enumerate_support", False)
    ]


def enumerated_loss(discrete: list[str], max_plate_nesting: int | None, loss: ELBO | None) -> ELBO:
    """``loss`` if given, else ``TraceEnum_ELBO`` when there are discrete sites, else Trace_ELBO."""
    if loss is not None:
        return loss
    if discrete:
        return TraceEnum_ELBO(max_plate_nesting=max_plate_nesting)
    return Trace_ELBO()


def hide_discrete(
    model: Callable[..., Any], discrete: list[str]
) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """(model with discrete sites enumerated in parallel, the same model with them hidden).

    The first is what ``TraceEnum_ELBO`` sums out exactly; the second is what an
    autoguide is built on, so it never tries to put a continuous guide on them.
    """
    if not discrete:
        return model, model
    enumerated = config_enumerate(model, default="parallel")
    return enumerated, poutine.block(enumerated, hide=list(discrete))


def plate_nesting(model: Any, given: int | None) -> int | None:
    """``given``, else the model's ``max_plate_nesting`` attribute, else None (Pyro guesses)."""
    if given is not None:
        return given
    owner = getattr(model, "__self__", model)
    value = getattr(owner, "max_plate_nesting", None)
    return int(value) if isinstance(value, int) else None


def guess_max_plate_nesting(model: Callable[..., Any], *args: Any, **kwargs: Any) -> int:
    """The deepest plate dimension used by one run of ``model`` (at least 1)."""
    with torch.no_grad(), poutine.block(), pyro.validation_enabled(False):
        trace = poutine.trace(_initialised(model)).get_trace(*args, **kwargs)
    dims = [
        -frame.dim for site in trace.nodes.values() for frame in site.get("cond_indep_stack", ())
    ]
    dims = [d for d in dims if d is not None and d > 0]
    return max(dims, default=1)


def _initialised(model: Callable[..., Any]) -> Callable[..., Any]:
    """``model`` with latent draws replaced by the prior median (improper priors included)."""
    return InitMessenger(init_to_median)(model)


@dataclass
class MapEstimate:
    """The MAP point (site name -> constrained value), the fitted AutoDelta and its record.

    ``values`` are copies: later fits (of this or any other model) never change them.
    ``converged`` states whether the criterion of :func:`map_estimate` was met (None: the
    objective is stochastic, so it cannot be certified); ``gradient_norm`` is the largest
    gradient entry of -log p(D, theta) at the point (unconstrained coordinates).
    """

    values: dict[str, torch.Tensor]
    guide: AutoDelta
    history: History
    converged: bool | None = None
    gradient_norm: float = math.nan
    log_joint: float = math.nan

    def __getitem__(self, site: str) -> torch.Tensor:
        return self.values[site]

    def condition(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn`` with every prior site fixed at the MAP point (run the network at theta_MAP)."""
        return poutine.condition(fn, data=self.values)


def _params_of(loss: ELBO, model: Callable[..., Any], guide: Callable[..., Any], args, kwargs):
    """The unconstrained tensors of every param site one loss evaluation meets."""
    with torch.no_grad(), poutine.trace(param_only=True) as capture:
        loss.loss(model, guide, *args, **kwargs)
    return [site["value"].unconstrained() for site in capture.trace.nodes.values()]


def _loss_and_gradient(loss: ELBO, model, guide, params, args, kwargs) -> tuple[float, float]:
    """-log p(D, theta) and the largest entry of its gradient over ``params``."""
    for p in params:
        p.grad = None
    value = loss.differentiable_loss(model, guide, *args, **kwargs)
    grads = torch.autograd.grad(value, params, allow_unused=True)
    norm = max((float(g.abs().max()) for g in grads if g is not None), default=0.0)
    return float(value.detach()), norm


def _tolerance(params: list[torch.Tensor], value: float) -> float:
    """The stated criterion: a gradient below sqrt(machine epsilon) * max(1, |objective|)."""
    eps = max((torch.finfo(p.dtype).eps for p in params), default=torch.finfo().eps)
    return math.sqrt(eps) * max(1.0, abs(value))


def _polish(loss: ELBO, model, guide, params, args, kwargs, max_iter: int) -> None:
    """L-BFGS with a strong-Wolfe line search on the deterministic MAP objective.

    Adam (through :func:`fit_svi`) brings the point near the mode; L-BFGS then converges
    to it to working precision, whatever the scale of the problem (a Normal(0, 100) prior
    far from the data needs no tuned learning rate). A non-finite step is undone.
    """
    saved = [p.detach().clone() for p in params]
    opt = torch.optim.LBFGS(
        params,
        lr=1.0,
        max_iter=max_iter,
        tolerance_grad=0.0,
        tolerance_change=0.0,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        value = loss.differentiable_loss(model, guide, *args, **kwargs)
        value.backward()
        return value

    try:
        opt.step(closure)
    finally:
        for p in params:
            p.grad = None
    if not all(bool(torch.isfinite(p).all()) for p in params):
        with torch.no_grad():
            for p, s in zip(params, saved):
                p.copy_(s)


def map_estimate(
    model: Any,
    *args: Any,
    steps: int = 1000,
    lr: float = 0.05,
    final_lr: float = 1e-5,
    init: Mapping[str, torch.Tensor] | None = None,
    loss: ELBO | None = None,
    optim: PyroOptim | None = None,
    max_plate_nesting: int | None = None,
    seed: int | None = 0,
    progress: bool = False,
    polish: int = 200,
    prefix: str | None = None,
    **kwargs: Any,
) -> MapEstimate:
    """theta_MAP = argmax log p(D | theta) + log p(theta) (notes eq. 26) through ``AutoDelta``.

    The AutoDelta guide q(theta) = delta(theta - theta_hat) makes the ELBO equal to the log
    joint log p(D, theta_hat) (its entropy term is dropped), so maximising it with
    :func:`fit_svi` is MAP. Discrete latent sites are hidden from the guide and summed out
    exactly by ``TraceEnum_ELBO``. The default optimiser is Adam whose learning rate decays
    geometrically from ``lr`` to ``final_lr`` over ``steps``; when the objective is
    deterministic (no subsampling, no sampled site outside the guide) up to ``polish``
    L-BFGS iterations then converge to the mode.

    Convergence criterion (stated in ``MapEstimate.converged``): the largest gradient entry
    of -log p(D, theta) in unconstrained coordinates is at most
    sqrt(machine epsilon) * max(1, |log p(D, theta)|). When it is not met a
    :class:`pyrobn.errors.ConvergenceWarning` says so; a stochastic objective is not
    certified (``converged=None``).

    Each call keeps its parameters apart: the guide's parameters live in Pyro's param store
    under a name of their own (``prefix``, default a fresh ``"map_<n>"``), released when the
    guide is collected, and the returned values are copies.

    Args:
        model: a Pyro model, a pyrobn model (its ``model`` method is used), or a module given
            priors by :func:`weight_decay_prior`.
        *args, **kwargs: the data, passed to the model at every step.
        init: initial values per site; by default the parameter values a module had before
            :func:`weight_decay_prior`, then the prior median.
        polish: at most this many L-BFGS iterations after Adam (0: none).
        prefix: the param-store name of the guide (default: unique per call).

    Returns:
        a :class:`MapEstimate`: ``.values`` (site -> tensor), ``.guide``, ``.history``,
        ``.converged``, ``.gradient_norm``, ``.log_joint``.

    Example:
        >>> blr = pyrobn.BayesianLinearRegression(3, noise_scale=0.5, lam=2.0)
        >>> map_estimate(blr, X, y)["theta"]      # = pyrobn.mle.ridge(X, y, 2.0, 0.5)
    """
    steps = check_int(steps, "steps")
    polish = check_int(polish, "polish", low=0)
    check_positive(lr, "lr")
    check_positive(final_lr, "final_lr")
    fn = model_callable(model)
    start = dict(prior_init_values(model)) if isinstance(model, torch.nn.Module) else {}
    start.update(init or {})
    with seeded(seed):
        discrete = discrete_sites(fn, *args, **kwargs)
        enumerated, hidden = hide_discrete(fn, discrete)
        nesting = plate_nesting(model, max_plate_nesting)
        if nesting is None and discrete:
            nesting = guess_max_plate_nesting(fn, *args, **kwargs)
        guide = AutoDelta(hidden, init_loc_fn=init_to_value(values=start, fallback=init_to_median))
        name = prefix if prefix is not None else unique_name("map")
        guide._pyro_name = name
        release_with(guide, name)
        elbo = enumerated_loss(discrete, nesting, loss)
        if optim is None:
            decay = (final_lr / lr) ** (1.0 / steps)
            optim = ClippedAdam({"lr": lr, "lrd": decay, "clip_norm": 1e6})
        history = fit_svi(
            enumerated,
            guide,
            *args,
            loss=elbo,
            optim=optim,
            steps=steps,
            progress=progress,
            description="map",
            **kwargs,
        )
        params = _params_of(elbo, enumerated, guide, args, kwargs)
        with torch.no_grad():
            deterministic = float(elbo.loss(enumerated, guide, *args, **kwargs)) == float(
                elbo.loss(enumerated, guide, *args, **kwargs)
            )
        converged: bool | None = None
        value, norm = math.nan, math.nan
        if deterministic:
            if polish:
                _polish(elbo, enumerated, guide, params, args, kwargs, polish)
            value, norm = _loss_and_gradient(elbo, enumerated, guide, params, args, kwargs)
            converged = norm <= _tolerance(params, value)
            if not converged:
                warnings.warn(
                    f"map_estimate did not converge: the largest gradient entry of "
                    f"-log p(D, theta) is {norm:.3g}, above the criterion "
                    f"{_tolerance(params, value):.3g} = sqrt(eps) * max(1, |log p|); raise "
                    "steps, lr or polish",
                    ConvergenceWarning,
                    stacklevel=2,
                )
        with torch.no_grad():
            values = {
                site: value_.detach().clone()
                for site, value_ in guide.median(*args, **kwargs).items()
            }
    return MapEstimate(
        values=values,
        guide=guide,
        history=history,
        converged=converged,
        gradient_norm=norm,
        log_joint=-value,
    )


__all__ = [
    "MapEstimate",
    "map_estimate",
    "parameter_prior",
    "prior_init_values",
    "weight_decay_prior",
]
