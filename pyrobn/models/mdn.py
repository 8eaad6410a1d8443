"""Mixture density network (lecture: "Red de Mezcla de Densidades (MDN)").

A neural network maps the input x to the parameters of a Gaussian mixture over the
target t (lecture, MDN slide):

    log p(t | x) = log sum_k pi_k(x) N(t | mu_k(x), Sigma_k(x)),

with pi(x) = softmax(logits(x)) and Sigma_k(x) either diagonal, diag sigma_k^2(x) with
sigma = softplus(.) + min_scale, or full (``covariance="full"``): Sigma_k(x) = L_k(x)
L_k(x)^T through a Cholesky factor whose diagonal is softplus(.) + min_scale and whose
strict lower triangle is the network's raw output. As a Bayesian network it is
z | x ~ Categorical(pi(x)), t | x, z ~ N(mu_z(x), Sigma_z(x)); z is enumerated exactly
(``TraceEnum_ELBO``), so the loss of the model with its (empty) guide is the exact mean
negative log-likelihood -(1/N) sum_n log p(t_n | x_n) ("podemos retropropagar porque
la función es diferenciable. Funciona porque podemos sumar sobre z").

Conditional models take the condition first: ``fit(x, t)``, ``log_prob(x, t)``,
``nll(x, t)``, ``sample(x, n_samples)``.

>>> from pyrobn.datasets import inverse_sine
>>> x, t = inverse_sine(200, seed=0, device="cpu")
>>> mdn = MixtureDensityNetwork(1, 1, n_components=3, hidden=(16, 16))
>>> mdn.fit(x, t, steps=50, lr=1e-2) is mdn
True
>>> mdn.log_prob(x=x[:2], t=t[:2]).shape, mdn.sample(x[:4], n_samples=5, seed=0).shape
(torch.Size([2]), torch.Size([5, 4, 1]))
"""

from __future__ import annotations

import itertools
import math
import numbers
import time
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro import poutine
from pyro.infer import TraceEnum_ELBO
from pyro.nn import PyroModule
from pyro.nn.module import to_pyro_module_
from pyro.ops.indexing import Vindex

from pyrobn.density import as_points, positive_number
from pyrobn.errors import ConfigurationError, ShapeError
from pyrobn.infer.result import FitResult
from pyrobn.infer.svi import History, fit_svi
from pyrobn.models.base import PyrobnModule
from pyrobn.nn import ACTIVATIONS, check_sizes, mlp
from pyrobn.random import generator
from pyrobn.validation import check_allocation, check_int

if TYPE_CHECKING:
    from pyrobn.graph import ModelGraph

__all__ = ["COVARIANCES", "MixtureDensityNetwork"]

#: the covariance families of the components
COVARIANCES = ("diagonal", "full")
_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def _initialise(net: torch.nn.Module, seed: int) -> None:
    """torch's default initialisation of every ``Linear`` layer (Kaiming-uniform weights,
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)) biases), drawn in the layer's own dtype from a local
    generator: the same weights whatever torch's default dtype and global random state."""
    g = generator(seed)
    with torch.no_grad():
        for layer in net.modules():
            if isinstance(layer, torch.nn.Linear):
                torch.nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=g)
                bound = 1 / math.sqrt(layer.in_features)
                torch.nn.init.uniform_(layer.bias, -bound, bound, generator=g)


def _columns(value: Any) -> int | None:
    """The number of columns ``value`` would have as points (None if it cannot tell)."""
    shape = getattr(value, "shape", None)
    if shape is None:
        try:
            shape = np.shape(value)
        except (ValueError, TypeError):
            return None
    if len(shape) == 1:
        return 1
    return int(shape[-1]) if len(shape) == 2 else None


class MixtureDensityNetwork(PyrobnModule):
    """p(t | x) = sum_k pi_k(x) N(t | mu_k(x), Sigma_k(x)) with an MLP for the parameters.

    Args:
        in_dim: dimension of x.
        out_dim: dimension of t.
        n_components: K.
        hidden: widths of the hidden layers (an int for one layer).
        covariance: ``"diagonal"`` (Sigma_k(x) = diag sigma_k^2(x), T numbers per
            component) or ``"full"`` (Sigma_k(x) = L_k(x) L_k(x)^T, a Cholesky factor of
            T (T + 1) / 2 numbers per component: the lecture's Sigma_k(x)).
        activation: ``"silu"`` (default), ``"tanh"`` or ``"relu"``.
        min_scale: a floor added to the standard deviations (the Cholesky diagonal),
            which keeps the likelihood bounded.
        seed: seeds the network's initial weights (a forked generator).
        dtype: ``"float32"`` (default) or ``"float64"``, whatever torch's default dtype.
    """

    max_plate_nesting = 1

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        n_components: int,
        hidden: int | Sequence[int] = (64, 64),
        *,
        covariance: str = "diagonal",
        activation: str = "silu",
        min_scale: float = 1e-3,
        seed: int = 0,
        dtype: str = "float32",
    ) -> None:
        in_dim = check_int(in_dim, "in_dim")
        out_dim = check_int(out_dim, "out_dim")
        n_components = check_int(n_components, "n_components")
        seed = check_int(seed, "seed", low=0)
        if isinstance(hidden, numbers.Integral) and not isinstance(hidden, bool):
            hidden = [hidden]
        if not isinstance(hidden, Sequence) or isinstance(hidden, str):
            raise ConfigurationError(
                f"hidden must be a layer width or a list of widths, got {hidden!r}"
            )
        widths = list(check_sizes(list(hidden), "hidden"))
        if not isinstance(activation, str) or activation not in ACTIVATIONS:
            raise ConfigurationError(
                f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}"
            )
        if not isinstance(covariance, str) or covariance not in COVARIANCES:
            raise ConfigurationError(f"covariance must be one of {COVARIANCES}, got {covariance!r}")
        if not isinstance(dtype, str) or dtype not in _DTYPES:
            raise ConfigurationError(f"dtype must be one of {tuple(_DTYPES)}, got {dtype!r}")
        min_scale = positive_number(min_scale, "min_scale")
        per_scale = out_dim if covariance == "diagonal" else out_dim * (out_dim + 1) // 2
        sizes = [in_dim, *widths, n_components * (1 + out_dim + per_scale)]
        n_weights = sum((a + 1) * b for a, b in itertools.pairwise(sizes))
        check_allocation(
            4 * n_weights + n_components * out_dim * out_dim,
            _DTYPES[dtype],
            "the MDN's weights (and Adam's state)",
        )
        super().__init__(
            in_dim=in_dim,
            out_dim=out_dim,
            n_components=n_components,
            hidden=widths,
            covariance=covariance,
            activation=activation,
            min_scale=min_scale,
            seed=seed,
            dtype=dtype,
        )
        self.in_dim, self.out_dim, self.n_components = in_dim, out_dim, n_components
        self.covariance = covariance
        self.min_scale = float(min_scale)
        self._per_scale = per_scale
        with torch.random.fork_rng(devices=[]):
            net = mlp(sizes, activation).to(_DTYPES[dtype])
        _initialise(net, seed)
        to_pyro_module_(net)
        self.net: PyroModule = net
        self._tril_rows: list[int] = []
        self._tril_cols: list[int] = []
        if covariance == "full":
            rows, cols = torch.tril_indices(out_dim, out_dim)
            self._tril_rows, self._tril_cols = rows.tolist(), cols.tolist()

    # ----------------------------------------------------------------- parameters
    def _parameters_of(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(log pi (N, K), mu (N, K, T), scale) for inputs x (N, in_dim); scale is sigma
        (N, K, T) for diagonal components, the Cholesky factor L (N, K, T, T) for full."""
        k, d = self.n_components, self.out_dim
        out = self.net(x)
        logits, mu, raw = out.split([k, k * d, k * self._per_scale], dim=-1)
        log_pi = torch.log_softmax(logits, -1)
        mu = mu.reshape(-1, k, d)
        raw = raw.reshape(-1, k, self._per_scale)
        if self.covariance == "diagonal":
            return log_pi, mu, F.softplus(raw) + self.min_scale
        rows = torch.tensor(self._tril_rows, device=raw.device)
        cols = torch.tensor(self._tril_cols, device=raw.device)
        diagonal = rows == cols
        entries = torch.where(diagonal, F.softplus(raw) + self.min_scale, raw)
        tril = raw.new_zeros(raw.shape[0], k, d, d)
        tril[..., rows, cols] = entries
        return log_pi, mu, tril

    def _component(self, mu: torch.Tensor, scale: torch.Tensor) -> dist.Distribution:
        """N(mu, diag scale^2) or N(mu, L L^T), with the event over the last axis of mu."""
        if self.covariance == "diagonal":
            return dist.Normal(mu, scale).to_event(1)
        return dist.MultivariateNormal(mu, scale_tril=scale)

    def _inputs(self, x: Any) -> torch.Tensor:
        p = next(self.parameters())
        return as_points(x, "x", dim=self.in_dim, dtype=p.dtype, device=p.device)

    def _targets(self, t: Any, n: int) -> torch.Tensor:
        p = next(self.parameters())
        tt = as_points(t, "t", dim=self.out_dim, dtype=p.dtype, device=p.device)
        if tt.shape[0] != n:
            raise ShapeError(f"t has {tt.shape[0]} rows but x has {n}; they must match")
        return tt

    def mixture_parameters(self, x: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(pi (N, K), mu (N, K, T), scale) at the inputs x, without gradients: scale is
        sigma (N, K, T) for diagonal components, the Cholesky factor L (N, K, T, T) for
        full ones (Sigma = L L^T; :meth:`covariances` gives Sigma for both)."""
        with torch.no_grad():
            log_pi, mu, scale = self._parameters_of(self._inputs(x))
        return log_pi.exp(), mu, scale

    def covariances(self, x: Any) -> torch.Tensor:
        """Sigma_k(x), shape (N, K, T, T)."""
        _, _, scale = self.mixture_parameters(x)
        if self.covariance == "diagonal":
            return torch.diag_embed(scale**2)
        return scale @ scale.transpose(-1, -2)

    # ---------------------------------------------------------------- model/guide
    def model(self, x: torch.Tensor, t: torch.Tensor | None = None, batch_size: int | None = None):
        """z_n | x_n ~ Categorical(pi(x_n)); t_n | x_n, z_n ~ N(mu_z(x_n), Sigma_z(x_n)).

        Scaled by 1/N so that the loss is the mean negative log-likelihood.
        """
        n = x.shape[0]
        with poutine.scale(scale=1.0 / n), pyro.plate("data", n, subsample_size=batch_size) as i:
            log_pi, mu, scale = self._parameters_of(x[i])
            z = pyro.sample("z", dist.Categorical(logits=log_pi), infer={"enumerate": "parallel"})
            # mu[..., z, :] broadcasts the data axis against z (enumerated: shape (K, 1))
            loc = Vindex(mu)[..., z, :]
            chosen = Vindex(scale)[..., z, :] if scale.dim() == 3 else Vindex(scale)[..., z, :, :]
            return pyro.sample("t", self._component(loc, chosen), obs=None if t is None else t[i])

    def guide(self, x: torch.Tensor, t: torch.Tensor | None = None, batch_size: int | None = None):
        """Empty: the network weights are point estimates (MLE) and z is summed out exactly."""

    def fit(
        self,
        x: Any,
        t: Any,
        *,
        steps: int = 2000,
        lr: float = 3e-3,
        final_lr: float | None = None,
        batch_size: int | None = None,
        seed: int | None = 0,
        progress: bool = False,
    ) -> MixtureDensityNetwork:
        """Maximum likelihood with :func:`fit_svi` (``TraceEnum_ELBO``, z summed out).

        Adam whose learning rate decays geometrically from ``lr`` to ``final_lr``
        (default ``lr / 10``) over ``steps`` steps, on minibatches of ``batch_size`` rows
        (all rows when None). The decay lets the last steps settle on an optimum instead
        of bouncing around it at a constant rate: fits with different seeds, and with 1 or
        2 torch threads (whose rounding differs), end within a few hundredths of a nat of
        each other (tests/test_mdn.py states the margins). ``seed`` seeds the run without
        touching the caller's random streams. Returns the model; the record (the mean
        log-likelihood estimate per step) is ``fit_result_``.
        """
        xt = self._inputs(x)
        tt = self._targets(t, xt.shape[0])
        lr = positive_number(lr, "lr")
        final_lr = lr / 10 if final_lr is None else positive_number(final_lr, "final_lr")
        steps = check_int(steps, "steps")
        if batch_size is not None:
            batch_size = check_int(batch_size, "batch_size")
        started = time.perf_counter()
        optim = pyro.optim.ClippedAdam({"lr": lr, "lrd": (final_lr / lr) ** (1.0 / steps)})
        with self._fitting(seed):
            history = fit_svi(
                self.model,
                self.guide,
                xt,
                tt,
                batch_size,
                loss=TraceEnum_ELBO(max_plate_nesting=self.max_plate_nesting),
                optim=optim,
                steps=steps,
                progress=progress,
                description=self._pyro_name,
            )
        result = FitResult.from_history(history, objective_name="mean_log_likelihood")
        return self._set_result(result, started)

    @property
    def history(self) -> History | None:
        """Deprecated: the record is ``fit_result_`` (its ``history`` holds the losses)."""
        warnings.warn(
            "MixtureDensityNetwork.history is deprecated: use fit_result_.history",
            DeprecationWarning,
            stacklevel=2,
        )
        return None if self.fit_result_ is None else self.fit_result_.history

    # -------------------------------------------------------------------- queries
    def _condition_first(self, args: tuple[Any, ...], x: Any, t: Any, what: str) -> tuple[Any, Any]:
        """(x, t) from a call of ``what``: keywords, or two positional arguments.

        Positional arguments are read as (x, t), the condition first. A call in the old
        order (t, x) is recognised where the shapes say so (in_dim != out_dim), with a
        DeprecationWarning; where they cannot (in_dim == out_dim) the call is read as
        (x, t) and warns that keywords make it unambiguous.
        """
        if not args:
            if x is None or t is None:
                raise ConfigurationError(f"{what} needs x and t: {what}(x, t)")
            return x, t
        if len(args) != 2 or x is not None or t is not None:
            raise ConfigurationError(
                f"{what} takes two arguments, the condition first: {what}(x, t) "
                f"or {what}(x=..., t=...)"
            )
        first, second = args
        a, b = _columns(first), _columns(second)
        if self.in_dim == self.out_dim:
            warnings.warn(
                f"{what} takes the condition first, {what}(x, t) (as fit(x, t)); earlier "
                f"releases took (t, x). With in_dim == out_dim the order cannot be told from "
                f"the shapes: the call is read as (x, t); pass {what}(x=..., t=...) to say so",
                DeprecationWarning,
                stacklevel=3,
            )
        elif (a, b) == (self.out_dim, self.in_dim):
            warnings.warn(
                f"{what}(t, x) is deprecated: the condition comes first, {what}(x, t), as in "
                "fit(x, t); this call was read in the old order",
                DeprecationWarning,
                stacklevel=3,
            )
            return second, first
        return first, second

    def log_prob(self, *args: Any, x: Any = None, t: Any = None) -> torch.Tensor:
        """log p(t_n | x_n) = logsumexp_k [log pi_k(x_n) + log N(t_n | mu_k(x_n), Sigma_k(x_n))].

        Called as ``log_prob(x, t)`` or ``log_prob(x=..., t=...)``: the condition first,
        as ``fit(x, t)`` (see :meth:`_condition_first` for calls in the old order).
        Shape (N,).
        """
        x, t = self._condition_first(args, x, t, "log_prob")
        xt = self._inputs(x)
        tt = self._targets(t, xt.shape[0])
        check_allocation(
            xt.shape[0] * self.n_components * self.out_dim * (self.out_dim + 2),
            xt.dtype,
            "the N x K component table",
        )
        with torch.no_grad():
            log_pi, mu, scale = self._parameters_of(xt)
            comp = self._component(mu, scale).log_prob(tt.unsqueeze(1))
            return torch.logsumexp(log_pi + comp, -1)

    def nll(self, *args: Any, x: Any = None, t: Any = None) -> float:
        """Mean negative log-likelihood -(1/N) sum_n log p(t_n | x_n) (nats per point);
        ``nll(x, t)``, the condition first."""
        x, t = self._condition_first(args, x, t, "nll")
        return float(-self.log_prob(x=x, t=t).mean())

    def sample(self, x: Any, n_samples: int = 1, seed: int | None = None) -> torch.Tensor:
        """Ancestral draws t ~ p(t | x): z ~ pi(x), then t ~ N(mu_z(x), Sigma_z(x)).

        Shape (n_samples, N, T) (the leading axis is dropped when ``n_samples == 1``);
        ``seed`` seeds a local generator (the caller's random streams are untouched).
        """
        n_samples = check_int(n_samples, "n_samples")
        pi, mu, scale = self.mixture_parameters(x)
        n, d = mu.shape[0], self.out_dim
        check_allocation(n_samples * n * d * 3, mu.dtype, f"sample(x, {n_samples})")
        g = generator(seed, mu.device)
        z = torch.multinomial(pi, n_samples, replacement=True, generator=g).T  # (S, N)
        rows = torch.arange(n, device=mu.device)
        eps = torch.randn(n_samples, n, d, generator=g, dtype=mu.dtype, device=mu.device)
        if self.covariance == "diagonal":
            draws = mu[rows, z] + scale[rows, z] * eps
        else:
            draws = mu[rows, z] + (scale[rows, z] @ eps.unsqueeze(-1)).squeeze(-1)
        return draws[0] if n_samples == 1 else draws

    def mean(self, x: Any) -> torch.Tensor:
        """E[t | x] = sum_k pi_k(x) mu_k(x), shape (N, T)."""
        pi, mu, _ = self.mixture_parameters(x)
        return (pi.unsqueeze(-1) * mu).sum(1)

    def mode(self, x: Any, iterations: int = 100) -> torch.Tensor:
        """argmax_t p(t | x), shape (N, T).

        Fixed-point (mean-shift) iterations t <- (sum_k r_k P_k)^-1 sum_k r_k P_k mu_k
        with P_k = Sigma_k^-1 and r_k the responsibilities at t climb to a local maximum
        from every component mean; the highest of those K local maxima is returned.
        """
        iterations = check_int(iterations, "iterations")
        pi, mu, scale = self.mixture_parameters(x)
        log_pi = pi.log()
        components = self._component(mu.unsqueeze(1), scale.unsqueeze(1))  # batch (N, 1, K)
        t = mu.clone()  # (N, K starts, T)

        def log_joint(points: torch.Tensor) -> torch.Tensor:  # points (N, S, T) -> (N, S, K)
            return log_pi.unsqueeze(1) + components.log_prob(points.unsqueeze(2))

        if self.covariance == "diagonal":
            var = scale**2
            for _ in range(iterations):
                r = torch.softmax(log_joint(t), -1).unsqueeze(-1)  # (N, S, K, 1)
                w = r / var.unsqueeze(1)
                t = (w * mu.unsqueeze(1)).sum(2) / w.sum(2)
        else:
            precision = torch.cholesky_inverse(scale)  # (N, K, T, T)
            weighted_mu = (precision @ mu.unsqueeze(-1)).unsqueeze(1)  # (N, 1, K, T, 1)
            for _ in range(iterations):
                r = torch.softmax(log_joint(t), -1)[..., None, None]  # (N, S, K, 1, 1)
                a = (r * precision.unsqueeze(1)).sum(2)  # (N, S, T, T)
                b = (r * weighted_mu).sum(2)  # (N, S, T, 1)
                t = torch.linalg.solve(a, b).squeeze(-1)
        best = torch.logsumexp(log_joint(t), -1).argmax(-1)
        return t[torch.arange(t.shape[0], device=t.device), best]

    # ------------------------------------------------------------------ structure
    @property
    def n_parameters(self) -> int:
        """The network's weights and biases: every number the fit learns."""
        return sum(p.numel() for p in self.parameters())

    def graph(self) -> ModelGraph:
        """The MDN as a Bayesian network (lecture, MDN): x -> z -> t and x -> t.

        z | x ~ Categorical(pi(x)) (latent, discrete, summed out) and t | x, z ~
        N(mu_z(x), Sigma_z(x)), both conditional tables given by the network's weights.

        >>> MixtureDensityNetwork(1, 1, 2, hidden=4).graph().parents("t")
        ('network', 'x', 'z')
        """
        from pyrobn.graph import GraphNode, ModelGraph

        return ModelGraph(
            [
                GraphNode("network", "parameter", label="θ (MLP)"),
                GraphNode("x", "observed", label="x"),
                GraphNode("z", "latent", discrete=True, label="z"),
                GraphNode("t", "observed", label="t"),
            ],
            [("network", "z"), ("network", "t"), ("x", "z"), ("x", "t"), ("z", "t")],
            plates={"data": (["x", "z", "t"], "N")},
            title="Mixture density network",
        )

    def __repr__(self) -> str:
        return (
            f"MixtureDensityNetwork({self.in_dim} -> {self.out_dim}, K={self.n_components}, "
            f"covariance={self.covariance!r}, hidden={self.config['hidden']})"
        )
