"""Mixture density network (lecture: "Red de Mezcla de Densidades (MDN)").

A neural network maps the input x to the parameters of a Gaussian mixture over the
target t:

    p(t | x) = sum_k pi_k(x) N(t | mu_k(x), diag sigma_k^2(x)),

with pi(x) = softmax(logits(x)), sigma(x) = softplus(.) > 0. As a Bayesian network it is
z | x ~ Categorical(pi(x)), t | x, z ~ N(mu_z(x), diag sigma_z^2(x)); z is enumerated
exactly (``TraceEnum_ELBO``), so the loss of the model with its (empty) guide is the
exact mean negative log-likelihood -(1/N) sum_n log p(t_n | x_n).

>>> mdn = MixtureDensityNetwork(1, 1, n_components=3, hidden=(32, 32))
>>> mdn.fit(x, t, steps=2000)
>>> mdn.sample(x_new, seed=0)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro import poutine
from pyro.infer import TraceEnum_ELBO
from pyro.nn import PyroModule, pyro_method
from pyro.nn.module import to_pyro_module_
from pyro.ops.indexing import Vindex

from pyrobn.density import as_points
from pyrobn.errors import ConfigurationError, ShapeError
from pyrobn.infer.svi import History, fit_svi
from pyrobn.models.base import PyrobnModule
from pyrobn.nn import ACTIVATIONS, check_sizes, mlp
from pyrobn.validation import check_int, check_positive


class MixtureDensityNetwork(PyrobnModule):
    """p(t | x) = sum_k pi_k(x) N(t | mu_k(x), diag sigma_k^2(x)) with an MLP for the parameters.

    Args:
        in_dim: dimension of x.
        out_dim: dimension of t.
        n_components: K.
        hidden: widths of the hidden layers (an int for one layer).
        activation: ``"silu"`` (default), ``"tanh"`` or ``"relu"``.
        min_scale: a floor added to sigma_k(x) (keeps the likelihood bounded).
        seed: seeds the network's initial weights.
    """

    max_plate_nesting = 1

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        n_components: int,
        hidden: int | Sequence[int] = (64, 64),
        *,
        activation: str = "silu",
        min_scale: float = 1e-3,
        seed: int = 0,
    ) -> None:
        check_int(in_dim, "in_dim")
        check_int(out_dim, "out_dim")
        check_int(n_components, "n_components")
        widths = list(check_sizes([hidden] if isinstance(hidden, int) else hidden, "hidden"))
        if activation not in ACTIVATIONS:
            raise ConfigurationError(
                f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}"
            )
        check_positive(min_scale, "min_scale")
        super().__init__(
            in_dim=in_dim,
            out_dim=out_dim,
            n_components=n_components,
            hidden=widths,
            activation=activation,
            min_scale=min_scale,
            seed=seed,
        )
        self.in_dim, self.out_dim, self.n_components = in_dim, out_dim, n_components
        self.min_scale = float(min_scale)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            net = mlp([in_dim, *widths, n_components * (1 + 2 * out_dim)], activation)
        to_pyro_module_(net)
        self.net: PyroModule = net
        self.history: History | None = None

    # ----------------------------------------------------------------- parameters
    def _parameters_of(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(log pi (N, K), mu (N, K, T), sigma (N, K, T)) for inputs x (N, in_dim)."""
        k, d = self.n_components, self.out_dim
        out = self.net(x)
        logits, mu, raw_scale = out.split([k, k * d, k * d], dim=-1)
        log_pi = torch.log_softmax(logits, -1)
        mu = mu.reshape(-1, k, d)
        sigma = F.softplus(raw_scale).reshape(-1, k, d) + self.min_scale
        return log_pi, mu, sigma

    def _inputs(self, x: Any) -> torch.Tensor:
        p = next(self.parameters())
        return as_points(x, "x", dim=self.in_dim, dtype=p.dtype, device=p.device)

    def _targets(self, t: Any, n: int) -> torch.Tensor:
        p = next(self.parameters())
        tt = as_points(t, "t", dim=self.out_dim, dtype=p.dtype, device=p.device)
        if tt.shape[0] != n:
            raise ShapeError(f"t has {tt.shape[0]} rows but x has {n}; they must match")
        return tt

    @pyro_method
    def mixture_parameters(self, x: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(pi (N, K), mu (N, K, T), sigma (N, K, T)) at the inputs x, without gradients."""
        with torch.no_grad():
            log_pi, mu, sigma = self._parameters_of(self._inputs(x))
        return log_pi.exp(), mu, sigma

    # ---------------------------------------------------------------- model/guide
    @pyro_method
    def model(self, x: torch.Tensor, t: torch.Tensor | None = None, batch_size: int | None = None):
        """z_n | x_n ~ Categorical(pi(x_n)); t_n | x_n, z_n ~ N(mu_z(x_n), diag sigma_z^2(x_n)).

        Scaled by 1/N so that the loss is the mean negative log-likelihood.
        """
        n = x.shape[0]
        with poutine.scale(scale=1.0 / n), pyro.plate("data", n, subsample_size=batch_size) as i:
            log_pi, mu, sigma = self._parameters_of(x[i])
            z = pyro.sample("z", dist.Categorical(logits=log_pi), infer={"enumerate": "parallel"})
            # mu[..., z, :] broadcasts the data axis against z (enumerated: shape (K, 1))
            loc, scale = Vindex(mu)[..., z, :], Vindex(sigma)[..., z, :]
            return pyro.sample(
                "t",
                dist.Normal(loc, scale).to_event(1),
                obs=None if t is None else t[i],
            )

    @pyro_method
    def guide(self, x: torch.Tensor, t: torch.Tensor | None = None, batch_size: int | None = None):
        """Empty: the network weights are point estimates (MLE) and z is summed out exactly."""

    def fit(
        self,
        x: Any,
        t: Any,
        *,
        steps: int = 2000,
        lr: float = 3e-3,
        batch_size: int | None = None,
        seed: int = 0,
        progress: bool = False,
    ) -> History:
        """Maximum likelihood with :func:`fit_svi` (``TraceEnum_ELBO``, Adam at ``lr``)."""
        xt = self._inputs(x)
        tt = self._targets(t, xt.shape[0])
        check_positive(lr, "lr")
        self.history = fit_svi(
            self.model,
            self.guide,
            xt,
            tt,
            batch_size,
            loss=TraceEnum_ELBO(max_plate_nesting=self.max_plate_nesting),
            optim=pyro.optim.Adam({"lr": lr}),
            steps=steps,
            progress=progress,
            seed=seed,
            description=self._pyro_name,
        )
        return self.history

    # -------------------------------------------------------------------- queries
    def log_prob(self, t: Any, x: Any) -> torch.Tensor:
        """log p(t_n | x_n) = logsumexp_k [log pi_k + sum_d log N(t_nd | mu_nkd, sigma_nkd^2)]."""
        xt = self._inputs(x)
        tt = self._targets(t, xt.shape[0])
        with torch.no_grad():
            log_pi, mu, sigma = self._parameters_of(xt)
            comp = dist.Normal(mu, sigma).log_prob(tt.unsqueeze(1)).sum(-1)
            return torch.logsumexp(log_pi + comp, -1)

    def nll(self, t: Any, x: Any) -> float:
        """Mean negative log-likelihood -(1/N) sum_n log p(t_n | x_n) (nats per point)."""
        return float(-self.log_prob(t, x).mean())

    def sample(self, x: Any, n_samples: int = 1, seed: int | None = None) -> torch.Tensor:
        """Ancestral draws t ~ p(t | x): z ~ pi(x), then t ~ N(mu_z(x), sigma_z^2(x)).

        Shape (n_samples, N, T) (the leading axis is dropped when ``n_samples == 1``).
        """
        check_positive(n_samples, "n_samples")
        pi, mu, sigma = self.mixture_parameters(x)
        g = torch.Generator(device=mu.device)
        g.manual_seed(seed if seed is not None else int(torch.randint(2**31, (1,))))
        n = mu.shape[0]
        z = torch.multinomial(pi, n_samples, replacement=True, generator=g).T  # (S, N)
        rows = torch.arange(n, device=mu.device)
        eps = torch.randn(n_samples, n, self.out_dim, generator=g, dtype=mu.dtype, device=mu.device)
        draws = mu[rows, z] + sigma[rows, z] * eps
        return draws[0] if n_samples == 1 else draws

    def mean(self, x: Any) -> torch.Tensor:
        """E[t | x] = sum_k pi_k(x) mu_k(x), shape (N, T)."""
        pi, mu, _ = self.mixture_parameters(x)
        return (pi.unsqueeze(-1) * mu).sum(1)

    def mode(self, x: Any, iterations: int = 100) -> torch.Tensor:
        """argmax_t p(t | x), shape (N, T).

        Fixed-point (mean-shift) iterations t <- sum_k w_k mu_k / sum_k w_k with
        w_k = r_k(t) / sigma_k^2 (r_k the responsibilities at t) climb to a local maximum
        from every component mean; the highest of those K local maxima is returned.
        """
        pi, mu, sigma = self.mixture_parameters(x)
        log_pi, var = pi.log(), sigma**2
        t = mu.clone()  # (N, K starts, T)

        def log_joint(points: torch.Tensor) -> torch.Tensor:  # points (N, S, T) -> (N, S, K)
            return log_pi.unsqueeze(1) + dist.Normal(mu.unsqueeze(1), sigma.unsqueeze(1)).log_prob(
                points.unsqueeze(2)
            ).sum(-1)

        for _ in range(iterations):
            r = torch.softmax(log_joint(t), -1).unsqueeze(-1)  # (N, S, K, 1)
            w = r / var.unsqueeze(1)
            t = (w * mu.unsqueeze(1)).sum(2) / w.sum(2)
        best = torch.logsumexp(log_joint(t), -1).argmax(-1)
        return t[torch.arange(t.shape[0], device=t.device), best]


def polynomial_gaussian_nll(
    x_train: Any, t_train: Any, x_test: Any, t_test: Any, degree: int = 5
) -> float:
    """Held-out mean NLL of the homoscedastic polynomial Gaussian regressor (1-D x and t).

    t | x ~ N(poly(x), s^2), with the polynomial and s^2 fitted by maximum likelihood on
    the training data (least squares; s^2 the mean squared training residual): the
    classic single-Gaussian baseline an MDN is compared with.
    """
    import numpy as np

    xs, ts = (np.asarray(torch.as_tensor(a).detach().cpu()).ravel() for a in (x_train, t_train))
    xv, tv = (np.asarray(torch.as_tensor(a).detach().cpu()).ravel() for a in (x_test, t_test))
    poly = np.polynomial.Polynomial.fit(xs, ts, degree)  # scaled domain: well conditioned
    var = float(np.mean((ts - poly(xs)) ** 2))
    resid = tv - poly(xv)
    return float(np.mean(0.5 * np.log(2 * math.pi * var) + 0.5 * resid**2 / var))
