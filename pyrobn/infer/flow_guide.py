"""Normalizing flows as variational posteriors (notes 2.2.2.5, eq. 18, used as a guide).

Variational inference (lecture: log p(x) = ELBO(q) + KL(q || p(θ | x))) is only as good
as its family q. A Gaussian guide cannot bend, skew or split; a flow can: with
ε ~ N(0, I) and an invertible g,

    θ = μ + σ ⊙ g(ε),   log q(θ) = log N(ε) - log|det D_ε g(ε)| - Σ log σ     (eq. 18)

Two guides:

* :class:`AutoFlowGuide`: an ``AutoContinuous`` autoguide over every continuous latent
  site of any Pyro model (in the unconstrained space), g a zuko spline or affine flow.
  It is an ``AutoGuide`` class, so :func:`pyrobn.infer.compare_guides` takes it as it
  takes ``AutoNormal``: ``compare_guides(model, {"flow": AutoFlowGuide, "normal":
  "normal"}, ...)`` or ``functools.partial(AutoFlowGuide, n_transforms=4)``.
* :class:`AmortizedFlowGuide`: q(z | x) for a model with one local latent vector per
  datum in the ``"data"`` plate (a VAE, lecture): an encoder gives μ(x), σ(x) and a
  context h(x) for a conditional flow g(ε; h(x)). It has the signature of
  ``VAE.model(x, batch_size=None)``: ``fit_svi(vae.model, AmortizedFlowGuide(...), x)``.

The draws are reparametrised (pathwise gradients) and each draw's log q is computed
with it, in the same pass (no inverse is needed to score the guide's own samples).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from pyro.infer.autoguide import AutoContinuous
from pyro.infer.autoguide.initialization import init_to_median
from pyro.nn import PyroModule, PyroParam
from pyro.nn.module import to_pyro_module_
from torch import nn

from pyrobn.errors import ConfigurationError, ShapeError
from pyrobn.models.flow import TRANSFORMS, zuko_flow
from pyrobn.nn import mlp
from pyrobn.validation import check_int, check_positive


class FlowPosterior(dist.TorchDistribution):
    """θ = loc + scale ⊙ g(ε), ε ~ N(0, I): a flow distribution that scores its own draws
    in the pass that made them (and any other value through g⁻¹)."""

    arg_constraints: dict[str, Any] = {}  # noqa: RUF012 - torch's class attribute
    support = constraints.independent(constraints.real, 1)
    has_rsample = True

    def __init__(
        self,
        loc: torch.Tensor,
        scale: torch.Tensor,
        transform: Any,
        batch_shape: torch.Size | tuple[int, ...] = (),
    ) -> None:
        self.loc, self.scale, self.transform = loc, scale, transform
        self._cache: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        super().__init__(torch.Size(batch_shape), loc.shape[-1:], validate_args=False)

    def expand(self, batch_shape: torch.Size, _instance: Any = None) -> FlowPosterior:
        return FlowPosterior(self.loc, self.scale, self.transform, batch_shape)

    def rsample(self, sample_shape: torch.Size | tuple[int, ...] = ()) -> torch.Tensor:
        shape = torch.Size(sample_shape) + self._batch_shape + self.loc.shape[-1:]
        loc = self.loc.expand(shape)
        eps = torch.randn(shape, dtype=loc.dtype, device=loc.device)
        w, ladj = self.transform.inv.call_and_ladj(eps)
        theta = loc + self.scale * w
        log_q = dist.Normal(0.0, 1.0).log_prob(eps).sum(-1) - ladj - self.scale.log().sum(-1)
        self._cache = {id(theta): (theta, log_q)}
        return theta

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        hit = self._cache.get(id(value))
        if hit is not None and hit[0] is value:
            return hit[1]
        w = (value - self.loc) / self.scale
        eps, ladj = self.transform.call_and_ladj(w)
        return dist.Normal(0.0, 1.0).log_prob(eps).sum(-1) + ladj - self.scale.log().sum(-1)


def _check_flow_options(transform: str, n_transforms: int, hidden: Sequence[int]) -> None:
    if transform not in TRANSFORMS:
        raise ConfigurationError(
            f"unknown transform {transform!r}; choose one of {list(TRANSFORMS)}"
        )
    check_int(n_transforms, "n_transforms")
    for i, h in enumerate(hidden):
        check_int(h, f"hidden[{i}]")


class AutoFlowGuide(AutoContinuous):
    """A flow posterior over all continuous latent sites of ``model`` (unconstrained space).

    q(θ) = N(0, I) pushed through g (``n_transforms`` zuko layers of ``transform``, width
    ``hidden``) and the affine map θ = loc + scale ⊙ w. ``loc`` starts at
    ``init_loc_fn``'s point and ``scale`` at ``init_scale`` (as ``AutoNormal``), so the
    guide starts near a small Gaussian and the flow learns the shape.

    >>> guide = AutoFlowGuide(model, n_transforms=2)
    >>> pyrobn.infer.fit_svi(model, guide, data, steps=2000, progress=False, seed=0)
    >>> compare_guides(model, {"flow": AutoFlowGuide, "normal": "normal"}, data)
    """

    def __init__(
        self,
        model: Any,
        *,
        transform: str = "spline_coupling",
        n_transforms: int = 2,
        hidden: Sequence[int] = (32, 32),
        bins: int = 8,
        init_loc_fn: Any = init_to_median,
        init_scale: float = 0.1,
    ) -> None:
        _check_flow_options(transform, n_transforms, hidden)
        check_positive(init_scale, "init_scale")
        self._flow_options = (transform, n_transforms, tuple(hidden), bins)
        self._init_scale = float(init_scale)
        super().__init__(model, init_loc_fn=init_loc_fn)

    def _setup_prototype(self, *args: Any, **kwargs: Any) -> None:
        super()._setup_prototype(*args, **kwargs)
        transform, n_transforms, hidden, bins = self._flow_options
        if self.latent_dim < 2 and transform.endswith("coupling"):
            transform = transform.replace("coupling", "autoregressive")  # 1-D: elementwise
        init = self._init_loc()
        self.flow = zuko_flow(transform, self.latent_dim, 0, n_transforms, hidden, bins).to(init)
        self.loc = nn.Parameter(init)
        self.scale = PyroParam(
            torch.full_like(init, self._init_scale), constraint=constraints.softplus_positive
        )

    def get_posterior(self, *args: Any, **kwargs: Any) -> FlowPosterior:
        flow = pyro.module(f"{self._pyro_name}.flow", self.flow)
        return FlowPosterior(self.loc, self.scale, flow.transform(None))

    def _loc_scale(self, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError(
            "a flow posterior has no closed-form median or quantiles: draw samples "
            "(pyro.infer.Predictive) and summarise them"
        )


class AmortizedFlowGuide(PyroModule):
    """q(z | x) = μ(x) + σ(x) ⊙ g(ε; h(x)), ε ~ N(0, I), for one local latent per datum.

    Args:
        data_dim, latent_dim: D and L.
        hidden: the encoder MLP's widths; its last hidden layer h(x) is the flow's
            context, and linear heads give μ(x) and log σ(x).
        transform, n_transforms, flow_hidden, bins: the conditional zuko flow g.
        site, plate: the model's latent site and data plate names (``"z"``, ``"data"``:
            the VAE's).

    Called as ``guide(x, batch_size=None)`` (the VAE's signature); the plate subsamples
    the same rows as the model's.

    >>> vae = pyrobn.VAE(64, latent_dim=8)
    >>> guide = AmortizedFlowGuide(64, 8)
    >>> fit_svi(vae.model, guide, x, batch_size=128, steps=2000, progress=False, seed=0)
    """

    def __init__(
        self,
        data_dim: int,
        latent_dim: int,
        *,
        hidden: Sequence[int] = (256, 128),
        transform: str = "spline_coupling",
        n_transforms: int = 2,
        flow_hidden: Sequence[int] = (64, 64),
        bins: int = 8,
        site: str = "z",
        plate: str = "data",
    ) -> None:
        super().__init__()
        self.data_dim = check_int(data_dim, "data_dim")
        self.latent_dim = check_int(latent_dim, "latent_dim")
        _check_flow_options(transform, n_transforms, flow_hidden)
        hidden = tuple(check_int(h, f"hidden[{i}]") for i, h in enumerate(hidden))
        if not hidden:
            raise ConfigurationError("the encoder needs at least one hidden layer")
        body = nn.Sequential(mlp([data_dim, *hidden]), nn.ReLU())
        self.encoder = to_pyro_module_(body) or body
        heads = nn.Linear(hidden[-1], 2 * latent_dim)
        self.heads = to_pyro_module_(heads) or heads
        if latent_dim < 2 and transform.endswith("coupling"):
            transform = transform.replace("coupling", "autoregressive")
        self.flow = zuko_flow(transform, latent_dim, hidden[-1], n_transforms, flow_hidden, bins)
        self.site, self.plate = site, plate

    def forward(self, x: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
        if x.dim() != 2 or x.shape[-1] != self.data_dim:
            raise ShapeError(f"x must have shape (n, {self.data_dim}), got {tuple(x.shape)}")
        flow = pyro.module(f"{self._pyro_name}.flow", self.flow)
        n = x.shape[0]
        with pyro.plate(self.plate, n, subsample_size=batch_size, device=x.device) as idx:
            xb = x if batch_size is None else x[idx]
            h = self.encoder(xb)
            loc, log_scale = self.heads(h).split(self.latent_dim, -1)
            posterior = FlowPosterior(loc, log_scale.exp(), flow.transform(h), loc.shape[:-1])
            return pyro.sample(self.site, posterior)

    @torch.no_grad()
    def log_weights(self, model: Any, x: torch.Tensor, num_samples: int = 1) -> torch.Tensor:
        """log p(x, z_k) - log q(z_k | x) for k = 1..K draws z_k ~ q: shape (K, n).

        mean over k: the ELBO per row; logsumexp - log K: the importance-weighted bound
        (IWAE), both lower bounds on log p(x).
        """
        from pyro import poutine

        out = []
        for _ in range(check_int(num_samples, "num_samples")):
            guide_trace = poutine.trace(self).get_trace(x)
            model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x)
            log_p = 0
            for site in model_trace.nodes.values():
                if site["type"] == "sample":
                    log_p = log_p + site["fn"].log_prob(site["value"])
            log_q = guide_trace.nodes[self.site]["fn"].log_prob(
                guide_trace.nodes[self.site]["value"]
            )
            out.append(log_p - log_q)
        return torch.stack(out)


def iwae_bound(log_weights: torch.Tensor) -> torch.Tensor:
    """log (1/K) Σ_k w_k per row from log-weights of shape (K, n) (Burda et al. 2016)."""
    return torch.logsumexp(log_weights, 0) - math.log(log_weights.shape[0])


__all__ = ["AmortizedFlowGuide", "AutoFlowGuide", "FlowPosterior", "iwae_bound"]
