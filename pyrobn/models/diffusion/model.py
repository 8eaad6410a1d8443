"""The diffusion model as a Pyro model/guide pair (notes 2.2.2.4, eq. 16-17; Figura 11).

The chapter writes a diffusion model as two Markov chains over x and z_1, ..., z_T:

    guide  q(x, z_1..z_T) = p_data(x) Π_{t=1}^T q(z_t | z_{t-1})          (eq. 16, fixed)
    model  p(x, z_1..z_T) = p(z_T) Π_{t=2}^T p(z_{t-1} | z_t) · p(x | z_1)  (eq. 17, learned)

with z_0 = x, q(z_t | z_{t-1}) = N(√(1 - β_t) z_{t-1}, β_t I) (see :mod:`.schedule`) and
p(z_T) = N(0, I). In Pyro the guide is the forward chain (no parameters) and the model
the reverse chain, so that the ELBO of the pair is the diffusion bound (Sohl-Dickstein et
al. 2015; Ho et al. 2020):

    -log p(x) <= KL(q(z_T | x) || p(z_T))                                 (prior term)
                 + Σ_{t=2}^T E_q KL(q(z_{t-1} | z_t, x) || p(z_{t-1} | z_t))   (diffusion)
                 - E_q log p(x | z_1)                                       (decoder)

The guide draws the forward chain backwards through its posteriors, z_T ~ q(z_T | x),
z_{t-1} ~ q(z_{t-1} | z_t, x): the same joint distribution as eq. 16, read in the order
in which every term is a KL between two Gaussians with the same conditioning, so Pyro's
``TraceMeanField_ELBO`` computes each term in closed form.

**The reverse step.** p(z_{t-1} | z_t) = q(z_{t-1} | z_t, x = x̂(z_t, t)): the forward
posterior with x replaced by the network's estimate x̂, so its variance is σ̃_t² and

    KL_t = ||a_t (x - x̂(z_t, t))||² / (2 σ̃_t²) = ½ (SNR_{t-1} - SNR_t) ||x - x̂(z_t, t)||².

x̂ comes from one of two parametrisations (``prediction``):

* ``"noise"`` (Ho et al. 2020): the network predicts the noise ε̂ of z_t = α_t x + σ_t ε,
  x̂ = (z_t - σ_t ε̂) / α_t;
* ``"data"``: the network predicts x. For data on L levels v_0 < ... < v_{L-1} (the grey
  levels mapped to [-1, 1]) it gives logits f_l per coordinate, and x̂ is the mean of
  π_l ∝ exp(f_l - (z_t - α_t v_l)² / (2 σ_t²)): the posterior mean of a coordinate given
  z_t under the network's prior over its level. When the noise is small against the gap
  between levels this snaps z_t / α_t to its level; the network supplies what the rest
  of the image says.

**The decoder** p(x | z_1) is over the data's levels, so the bound is on the discrete
likelihood, in nats: a categorical with logits f_l(z_1) - (z_1 - α_1 v_l)² / (2 σ_1²)
(``"data"``), or with a learned logit table in place of f (``"noise"``). For continuous
data it is N(x̂(z_1, 1), (σ_1 / α_1)² I) on standardised data, a bound on the density.

**Training** subsamples the sum over t as diffusion models are trained: with
``time_samples=K`` the model and guide hold one ``pyro.plate("time", T - 1)`` subsampled
to K steps, scaled by (T - 1) / K, so the ELBO is an unbiased estimate of the bound with
K network evaluations per row. Row i sees the plate's K steps shifted by a fixed offset
(a rotation of the steps 2..T, so each of its steps is still uniform): the rows of one
minibatch see different steps. Inside the plate each term draws its own z_t from the
closed form q(z_t | x) (site ``"z_t"``, masked out of the bound in both programs: it is
the point the term conditions on, not a factor); the decoder's z_1 likewise (``"z_1"``).
``time_samples=None`` runs the whole chain, one site per step (exactly eq. 16-17).

**Conditioning** (notes 2.2.3, eq. 19): with ``n_classes > 0`` the network also reads a
one-hot label, with one more slot meaning "no label"; training drops the label with
probability ``p_uncond`` so that one network is both p(x | y) and p(x), and sampling with
``guidance=w`` combines them as (1 + w) f(z, y) - w f(z, ∅) (classifier-free guidance,
Ho & Salimans 2021).
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import torch
from pyro.infer import ELBO, TraceMeanField_ELBO
from pyro.nn.module import to_pyro_module_

from pyrobn.errors import ConfigurationError, ShapeError
from pyrobn.infer.optim import FusedAdam
from pyrobn.infer.result import FitResult
from pyrobn.infer.svi import History, fit_svi
from pyrobn.models.base import PyrobnModule
from pyrobn.models.diffusion.network import Denoiser
from pyrobn.models.diffusion.schedule import Schedule, betas_for
from pyrobn.models.neural import (
    LevelData,
    check_guidance,
    check_p_uncond,
    class_context,
    guided,
    minibatch_schedule,
    standardize_once,
)
from pyrobn.nn import ACTIVATIONS, check_sizes
from pyrobn.random import generator
from pyrobn.validation import (
    check_finite,
    check_int,
    check_integers_in_range,
    check_positive,
    check_shape,
    to_real_tensor,
)

__all__ = ["PREDICTIONS", "BoundTerms", "DiffusionModel"]

#: the parametrisations of the reverse step
PREDICTIONS = ("data", "noise")
#: numbers held at once by the evaluation of the bound (rows x steps x features)
_EVAL_BUDGET = 2**22
#: x (golden ratio): the per-row offsets of the time plate, spread over the steps
_GOLDEN = 0.6180339887498949


class _Coefs(NamedTuple):
    """The schedule at some steps t, each (..., 1): the marginal q(z_t | x) = N(α_t x,
    σ_t²) and the posterior q(z_{t-1} | z_t, x) = N(a_t x + b_t z_t, σ̃_t²)."""

    alpha: torch.Tensor
    sigma: torch.Tensor
    post_x: torch.Tensor
    post_z: torch.Tensor
    post_std: torch.Tensor


class BoundTerms(NamedTuple):
    """The diffusion bound of each row, term by term, in nats (:meth:`DiffusionModel.bound_terms`).

    ``-log p(x) <= prior + diffusion.sum(-1) + decoder``.
    """

    prior: torch.Tensor  # (n,)     KL(q(z_T | x) || p(z_T))
    diffusion: torch.Tensor  # (n, T-1) E KL(q(z_{t-1} | z_t, x) || p(z_{t-1} | z_t)), t = 2..T
    decoder: torch.Tensor  # (n,)     -E log p(x | z_1)

    @property
    def total(self) -> torch.Tensor:
        """The bound on -log p(x) per row."""
        return self.prior + self.diffusion.sum(-1) + self.decoder


class _LevelCategorical(dist.Categorical):
    """A categorical over the levels from log-probabilities already normalised (by
    ``log_softmax``: the same distribution as ``Categorical(logits=...)``, without the
    second normalisation, a logsumexp, that torch's constructor would do)."""

    def __init__(self, log_probs: torch.Tensor) -> None:
        self.logits = self._param = log_probs
        self._num_events = log_probs.shape[-1]
        torch.distributions.Distribution.__init__(self, log_probs.shape[:-1], validate_args=False)

    def expand(self, batch_shape: Any, _instance: Any = None) -> _LevelCategorical:
        shape = torch.Size(batch_shape)
        return _LevelCategorical(self.logits.expand(*shape, self._num_events))


def _normal(loc: torch.Tensor, scale: torch.Tensor) -> dist.TorchDistribution:
    return dist.Normal(loc, scale, validate_args=False).to_event(1)


class DiffusionModel(LevelData, PyrobnModule):
    """A diffusion model (notes 2.2.2.4): forward chain as guide, reverse chain as model.

    Args:
        data_dim: D, the number of coordinates of x.
        levels: L for data on the integer levels 0..L-1 (grey levels: the bound is on the
            discrete likelihood); ``None`` for real-valued data (standardised by the first
            fit; the bound is on the density).
        timesteps: T >= 1.
        schedule: ``"log_snr"`` (the default), ``"cosine"``, ``"linear"`` or the T betas
            (see :mod:`.schedule`). On the book's digits (T = 1000, 60 epochs, same
            network and seed) the test bound was 95.0 nats/image with ``"log_snr"`` and
            97.9 with ``"cosine"``: the cosine schedule crosses the small-noise steps,
            where most nats are spent, in a few large steps.
        prediction: ``"data"`` or ``"noise"`` (see the module docstring).
        hidden: the widths of the network's hidden layers.
        activation: a name in :data:`pyrobn.nn.ACTIVATIONS`.
        time_dim: the number of frequencies of the step's features.
        dropout: dropout rate in the network's hidden layers (during ``fit`` only).
        n_classes: > 0 for a class-conditional model p(x | y) (eq. 19).
        p_uncond: the probability that training drops the label (classifier-free guidance).
        guidance: the default guidance weight w of :meth:`sample` (conditional models).
        sample_steps: the default number of steps of :meth:`sample` (None: all T).

    >>> dm = DiffusionModel(64, levels=17, timesteps=100, hidden=(64, 64))
    >>> dm.sample(2, seed=0).shape
    torch.Size([2, 64])
    """

    max_plate_nesting = 2

    def __init__(
        self,
        data_dim: int,
        *,
        levels: int | None = None,
        timesteps: int = 1000,
        schedule: str | Sequence[float] = "log_snr",
        prediction: str = "data",
        hidden: Sequence[int] = (512, 512, 512),
        activation: str = "silu",
        time_dim: int = 16,
        dropout: float = 0.0,
        n_classes: int = 0,
        p_uncond: float = 0.1,
        guidance: float = 0.0,
        sample_steps: int | None = None,
    ) -> None:
        data_dim = check_int(data_dim, "data_dim")
        if levels is not None:
            levels = check_int(levels, "levels", low=2)
        timesteps = check_int(timesteps, "timesteps")
        betas = betas_for(schedule, timesteps)  # validates the schedule
        if prediction not in PREDICTIONS:
            raise ConfigurationError(
                f"unknown prediction {prediction!r}; choose one of {list(PREDICTIONS)}"
            )
        hidden = check_sizes(hidden, "hidden")
        if activation not in ACTIVATIONS:
            raise ConfigurationError(
                f"unknown activation {activation!r}; choose one of {sorted(ACTIVATIONS)}"
            )
        time_dim = check_int(time_dim, "time_dim")
        if not isinstance(dropout, int | float) or not 0 <= dropout < 1:
            raise ConfigurationError(f"dropout must lie in [0, 1), got {dropout!r}")
        n_classes = check_int(n_classes, "n_classes", low=0)
        if n_classes == 1:
            raise ConfigurationError("n_classes must be 0 (unconditional) or at least 2")
        p_uncond = check_p_uncond(p_uncond)
        guidance = check_guidance(guidance, n_classes, p_uncond)
        if sample_steps is not None:
            sample_steps = _check_steps(sample_steps, timesteps)
        super().__init__(
            data_dim=data_dim,
            levels=levels,
            timesteps=timesteps,
            schedule=schedule if isinstance(schedule, str) else [float(b) for b in betas],
            prediction=prediction,
            hidden=list(hidden),
            activation=activation,
            time_dim=time_dim,
            dropout=float(dropout),
            n_classes=n_classes,
            p_uncond=p_uncond,
            guidance=guidance,
            sample_steps=sample_steps,
        )
        self.data_dim, self.levels, self.timesteps = data_dim, levels, timesteps
        self.guidance, self.sample_steps = guidance, sample_steps
        self.prediction, self.n_classes, self.p_uncond = prediction, n_classes, p_uncond
        sched = Schedule(schedule if isinstance(schedule, str) else betas.tolist(), timesteps)
        # float64 closed forms, rebuilt from the config (not saved): cast where used
        for name, value in sched.as_dict().items():
            self.register_buffer(f"_{name}", value, persistent=False)
        # the same, one row per step: one gather per use in the hot path
        columns = [getattr(self, f"_{name}") for name in _Coefs._fields]
        self.register_buffer("_schedule", torch.stack(columns, -1), persistent=False)
        discrete_data = levels is not None and prediction == "data"
        net = Denoiser(
            data_dim,
            levels if discrete_data else 1,
            hidden,
            timesteps=timesteps,
            condition_dim=n_classes + 1 if n_classes else 0,
            activation=activation,
            time_dim=time_dim,
            dropout=float(dropout),
        )
        self.net = to_pyro_module_(net) or net
        if levels is not None:
            self.register_buffer("level_values", torch.linspace(-1.0, 1.0, levels))
            if prediction == "noise":
                self.decoder_logits = torch.nn.Parameter(torch.zeros(data_dim, levels))
        else:
            # x̃ = (x - shift) / scale, set by the first fit
            self.register_buffer("shift", torch.zeros(data_dim))
            self.register_buffer("scale", torch.ones(data_dim))
            self.register_buffer("standardized", torch.tensor(False))
        self.eval()  # dropout and label dropout only inside fit

    # ------------------------------------------------------------------ harness protocol
    @property
    def nll_kind(self) -> str:
        """``"bound"``: :meth:`nll` is the diffusion bound, an upper bound on -log p(x)."""
        return "bound"

    # ------------------------------------------------------------------ boundary checks
    # (x and y: LevelData)
    def _check_t(self, t: Any, name: str = "t", low: int = 1) -> torch.Tensor:
        t = to_real_tensor(t, name, dtype=torch.float64, device=self.device)
        check_integers_in_range(t, low, self.timesteps + 1, name)
        return t.long()

    # ------------------------------------------------------------------ pieces
    def _table(self, name: str, t: torch.Tensor | int, dtype: torch.dtype) -> torch.Tensor:
        """The schedule's ``name`` at steps t, as ``dtype``, with a trailing axis of 1."""
        value = getattr(self, f"_{name}")[t]
        return value.to(dtype).unsqueeze(-1)

    def _coefs(self, t: torch.Tensor | int, dtype: torch.dtype) -> _Coefs:
        """α_t, σ_t, a_t, b_t, σ̃_t at steps t (one gather), each with a trailing axis of 1."""
        return _Coefs(*self._schedule[t].to(dtype).unsqueeze(-2).unbind(-1))

    def _x_tilde(self, x: torch.Tensor) -> torch.Tensor:
        """x on the chain's scale: the level's value in [-1, 1], or the standardised x."""
        if self.discrete:
            return self.level_values.to(self.dtype)[x]
        return (x - self.shift) / self.scale

    def _label(
        self, y: torch.Tensor | None, shape: torch.Size, dtype: torch.dtype, drop: bool = False
    ) -> torch.Tensor | None:
        """One-hot label with the "no label" slot; ``y = None`` for a conditional model
        means "no label" for every row; ``drop`` drops labels with probability p_uncond
        (:func:`pyrobn.models.neural.class_context`)."""
        if self.n_classes == 0:
            return None
        return class_context(
            y, self.n_classes, dtype, p_uncond=self.p_uncond if drop else 0.0,
            shape=shape, device=self.device,
        )  # fmt: skip

    def _level_log_lik(self, z: torch.Tensor, k: _Coefs) -> torch.Tensor:
        """-(z - α_t v_l)² / (2 σ_t²) for every level l: shape (..., D, L)."""
        v = self.level_values.to(z.dtype)
        d = z.unsqueeze(-1) - k.alpha.unsqueeze(-1) * v
        weight = -0.5 / k.sigma.unsqueeze(-1) ** 2
        if d.requires_grad:
            return d.square() * weight
        return d.square_().mul_(weight)  # z comes from the forward chain: no gradient

    def _net_out(
        self, z: torch.Tensor, t: torch.Tensor, c: torch.Tensor | None, guidance: float = 0.0
    ) -> torch.Tensor:
        """The network's output (..., D, P); with ``guidance`` w > 0 the combination
        (1 + w) f(z, t, y) - w f(z, t, ∅) of the conditional and unconditional outputs."""
        return guided(lambda context: self.net(z, t, context), c, guidance)

    def _predict(
        self,
        z: torch.Tensor,
        t: torch.Tensor,
        c: torch.Tensor | None,
        guidance: float = 0.0,
        coefs: _Coefs | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x̂(z_t, t) on the chain's scale, and the level logits (or None) of p(x | z_t)."""
        out = self._net_out(z, t, c, guidance)
        k = self._coefs(t, z.dtype) if coefs is None else coefs
        if self.prediction == "noise":
            return (z - k.sigma * out[..., 0]) / k.alpha, None
        if not self.discrete:
            return out[..., 0], None
        logits = out + self._level_log_lik(z, k)
        x_hat = torch.softmax(logits, -1) @ self.level_values.to(z.dtype)
        return x_hat, logits

    def _reverse(
        self, z: torch.Tensor, t: torch.Tensor, c: torch.Tensor | None, guidance: float = 0.0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and sd of p(z_{t-1} | z_t) = q(z_{t-1} | z_t, x̂(z_t, t)), t >= 2."""
        k = self._coefs(t, z.dtype)
        x_hat, _ = self._predict(z, t, c, guidance, k)
        mean = k.post_x * x_hat + k.post_z * z
        return mean, k.post_std.expand_as(mean)

    def _forward_posterior(
        self, x_tilde: torch.Tensor, z: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and sd of q(z_{t-1} | z_t, x), t >= 2."""
        k = self._coefs(t, z.dtype)
        mean = k.post_x * x_tilde + k.post_z * z
        return mean, k.post_std.expand_as(mean)

    def _marginal(
        self, x_tilde: torch.Tensor, t: torch.Tensor | int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and sd of q(z_t | x) = N(α_t x, σ_t² I)."""
        k = self._coefs(t, x_tilde.dtype)
        mean = k.alpha * x_tilde
        return mean, k.sigma.expand_as(mean)

    def _decoder(
        self, z1: torch.Tensor, c: torch.Tensor | None, guidance: float = 0.0
    ) -> dist.TorchDistribution:
        """p(x | z_1): categorical over the levels (batch (..., D)), or a Gaussian on x̃."""
        t1 = torch.ones(z1.shape[:-1], dtype=torch.long, device=z1.device)
        if self.discrete:
            if self.prediction == "data":
                _, logits = self._predict(z1, t1, c, guidance)
            else:
                logits = self.decoder_logits + self._level_log_lik(z1, self._coefs(1, z1.dtype))
            return _LevelCategorical(torch.log_softmax(logits, -1)).to_event(1)
        x_hat, _ = self._predict(z1, t1, c, guidance)
        k = self._coefs(1, z1.dtype)
        scale = (k.sigma / k.alpha).expand_as(x_hat)
        return _normal(x_hat, scale)

    def _obs(self, xb: torch.Tensor) -> torch.Tensor:
        """What the decoder observes: the levels, or the standardised x."""
        return xb if self.discrete else self._x_tilde(xb)

    def _log_det(self) -> float | torch.Tensor:
        """log |det dx̃/dx| = -Σ log scale (0 for discrete data)."""
        return 0.0 if self.discrete else -self.scale.log().sum()

    def _time_plate_steps(self, strata: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Steps (K, B) in 2..T of the plate's K indices, rotated by a per-row offset."""
        span = self.timesteps - 1
        offset = ((rows.to(torch.float64) * _GOLDEN) % 1.0 * span).long()
        return (strata[:, None] + offset[None, :]) % span + 2

    # ------------------------------------------------------------------ Pyro model / guide
    def model(
        self,
        x: torch.Tensor,
        y: torch.Tensor | None = None,
        batch_size: int | None = None,
        time_samples: int | None = None,
    ) -> None:
        """The reverse chain (eq. 17): z_T ~ N(0, I), z_{t-1} ~ p(z_{t-1} | z_t), x ~ p(x | z_1).

        ``x`` holds levels (long) or real rows; ``batch_size`` subsamples the data plate;
        ``time_samples`` subsamples the steps (see the module docstring).
        """
        T = self.timesteps
        with pyro.plate("data", x.shape[0], subsample_size=batch_size, device=x.device) as idx:
            xb = x[idx]
            yb = None if y is None else y[idx]
            x_tilde = self._x_tilde(xb)
            c = self._label(yb, idx.shape, x_tilde.dtype, drop=self.training)
            zeros = torch.zeros_like(x_tilde)
            z = pyro.sample("z_T", _normal(zeros, torch.ones_like(zeros)))
            if time_samples is None:
                for t in range(T, 1, -1):
                    steps = torch.full(idx.shape, t, dtype=torch.long, device=x.device)
                    z = pyro.sample(f"z_{t - 1}", _normal(*self._reverse(z, steps, c)))
            else:
                if T >= 2:
                    K = min(check_int(time_samples, "time_samples"), T - 1)
                    with pyro.plate("time", T - 1, subsample_size=K, dim=-2, device=x.device) as ts:
                        steps = self._time_plate_steps(ts, idx)
                        with poutine.mask(mask=False):
                            z_t = pyro.sample("z_t", _normal(*self._marginal(x_tilde, steps)))
                        pyro.sample("z_prev", _normal(*self._reverse(z_t, steps, c)))
                with poutine.mask(mask=False):
                    z = pyro.sample("z_1", _normal(*self._marginal(x_tilde, 1)))
            pyro.sample("x", self._decoder(z, c), obs=self._obs(xb))
            if not self.discrete:  # log p(x) = log p(x̃) - Σ log scale
                pyro.factor("standardisation", self._log_det() * x_tilde.new_ones(idx.shape))

    def guide(
        self,
        x: torch.Tensor,
        y: torch.Tensor | None = None,
        batch_size: int | None = None,
        time_samples: int | None = None,
    ) -> None:
        """The forward chain (eq. 16), no parameters: z_T ~ q(z_T | x), then
        z_{t-1} ~ q(z_{t-1} | z_t, x) (the same joint as Π q(z_t | z_{t-1}), read backwards)."""
        T = self.timesteps
        with pyro.plate("data", x.shape[0], subsample_size=batch_size, device=x.device) as idx:
            x_tilde = self._x_tilde(x[idx])
            z = pyro.sample("z_T", _normal(*self._marginal(x_tilde, T)))
            if time_samples is None:
                for t in range(T, 1, -1):
                    steps = torch.full(idx.shape, t, dtype=torch.long, device=x.device)
                    z = pyro.sample(
                        f"z_{t - 1}", _normal(*self._forward_posterior(x_tilde, z, steps))
                    )
            else:
                if T >= 2:
                    K = min(check_int(time_samples, "time_samples"), T - 1)
                    with pyro.plate("time", T - 1, subsample_size=K, dim=-2, device=x.device) as ts:
                        steps = self._time_plate_steps(ts, idx)
                        with poutine.mask(mask=False):
                            z_t = pyro.sample("z_t", _normal(*self._marginal(x_tilde, steps)))
                        pyro.sample(
                            "z_prev", _normal(*self._forward_posterior(x_tilde, z_t, steps))
                        )
                with poutine.mask(mask=False):
                    pyro.sample("z_1", _normal(*self._marginal(x_tilde, 1)))

    # ------------------------------------------------------------------ fitting
    def fit(
        self,
        x: Any,
        y: Any = None,
        *,
        steps: int | None = None,
        epochs: int | None = None,
        batch_size: int | None = 128,
        time_samples: int = 4,
        lr: float = 1e-3,
        loss: ELBO | None = None,
        optim: Any = None,
        ema: float | None = None,
        x_val: Any = None,
        y_val: Any = None,
        eval_every: int = 10,
        seed: int | None = None,
        progress: bool = True,
        **svi_kwargs: Any,
    ) -> DiffusionModel:
        """Maximise the diffusion bound with :func:`pyrobn.infer.fit_svi`.

        Each SVI step takes ``batch_size`` random rows and ``time_samples`` random steps
        per row (the subsampled time plate), ``TraceMeanField_ELBO`` (every term a Gaussian
        KL in closed form) and Adam (:class:`pyrobn.infer.optim.FusedAdam`). Give
        ``steps`` (SVI steps) or ``epochs`` (ceil(n / batch_size) steps each).

        ``ema`` (e.g. 0.999) keeps an exponential moving average of the parameters
        (updated after every step through ``fit_svi``'s callback) and leaves the model at
        the average at the end: the usual way to evaluate diffusion models. With
        ``x_val`` the full bound on the validation rows is computed every ``eval_every``
        epochs (one seeded draw) and the parameters of the best evaluation are kept
        (``validation_bound_`` holds the curve in nats per row). Continuous data are
        standardised by the first fit's mean and sd. Other keyword arguments (``callback``,
        ``checkpoint``, ``resume``, ...) go to :func:`fit_svi`. Returns ``self``;
        ``fit_result_`` holds the ELBO estimate per step.

        Raises:
            TrainingDiverged: the bound became NaN or inf; the parameters are those of the
                last finite step.
        """
        x = self._check_x(x)
        n = x.shape[0]
        y_t = self._check_y(y, n)
        time_samples = check_int(time_samples, "time_samples")
        check_positive(lr, "lr")
        batch, per_epoch, total = minibatch_schedule(n, steps, epochs, batch_size)
        if ema is not None and not (isinstance(ema, int | float) and 0 < ema < 1):
            raise ConfigurationError(f"ema must lie in (0, 1), got {ema!r}")
        validation = None
        if x_val is not None:
            xv = self._check_x(x_val, "x_val")
            validation = (xv, self._check_y(y_val, xv.shape[0], "y_val"))
            eval_chunk = check_int(eval_every, "eval_every") * per_epoch
        if not self.discrete:
            standardize_once(x, self.shift, self.scale, self.standardized)
        loss = loss if loss is not None else TraceMeanField_ELBO()
        optim = optim if optim is not None else FusedAdam(lr=lr)
        args = (x, y_t, None if batch >= n else batch, time_samples)
        svi_kwargs.setdefault("description", type(self).__name__)
        average = _ParameterAverage(self, ema) if ema is not None else None
        user_callback = svi_kwargs.pop("callback", None)

        def callback(step: int, value: float) -> None:
            if average is not None:
                average.update()
            if user_callback is not None:
                user_callback(step, value)

        self.validation_bound_: list[float] = []
        history = History()
        best: tuple[float, dict[str, torch.Tensor]] | None = None
        self.train()
        try:
            done = 0
            chunk = total if validation is None else eval_chunk
            while done < total:
                part = fit_svi(
                    self.model, self.guide, *args, loss=loss, optim=optim,
                    steps=min(chunk, total - done) if validation is not None else total,
                    seed=None if seed is None else seed + done, progress=progress,
                    callback=callback, **svi_kwargs,
                )  # fmt: skip
                history.losses.extend(part.losses)
                history.wall_time += part.wall_time
                done += len(part.losses)
                if validation is None:
                    break
                self.eval()  # the bound of the model itself: no dropout while scoring
                with average.swapped() if average is not None else contextlib.nullcontext():
                    score = float(self.nll(*validation, seed=0).mean())
                    if best is None or score < best[0]:
                        best = (
                            score,
                            {k: v.detach().clone() for k, v in self.state_dict().items()},
                        )
                self.validation_bound_.append(score)
                self.train()
        finally:
            self.eval()
        history.steps = len(history.losses)
        if best is not None:
            self.load_state_dict(best[1])
        elif average is not None:
            average.copy_to_model()
        result = FitResult.from_history(history, objective_name="elbo")
        return self._set_result(result)

    # ------------------------------------------------------------------ the bound
    @torch.no_grad()
    def bound_terms(self, x: Any, y: Any = None, *, seed: int | None = None) -> BoundTerms:
        """The diffusion bound of each row of x, term by term (nats), over all T steps.

        Each expectation over q is estimated with one draw per row and step (seeded by
        ``seed`` from a generator of its own); the sum over the T - 1 diffusion terms of
        independent draws has a small variance. Returns :class:`BoundTerms`
        (prior (n,), diffusion (n, T - 1) for t = 2..T, decoder (n,)).
        """
        x = self._check_x(x)
        n = x.shape[0]
        y_t = self._check_y(y, n)
        gen = generator(seed, self.device)
        x_tilde = self._x_tilde(x)
        c = self._label(y_t, torch.Size([n]), x_tilde.dtype)
        T = self.timesteps
        # prior term, closed form: ½ Σ (α_T² x² + σ_T² - 1 - log σ_T²)
        alpha_T = self._table("alpha", T, x_tilde.dtype)
        var_T = self._table("sigma", T, x_tilde.dtype) ** 2
        prior = 0.5 * (alpha_T**2 * x_tilde**2 + var_T - 1 - var_T.log()).sum(-1)
        # diffusion terms, in chunks of steps
        per_step = n * self.data_dim * max(self.levels or 1, 8)
        width = max(1, _EVAL_BUDGET // max(1, per_step))
        terms = []
        for start in range(2, T + 1, width):
            steps = torch.arange(start, min(T + 1, start + width), device=self.device)
            t = steps[:, None].expand(-1, n)
            mean, sd = self._marginal(x_tilde, t)
            z = mean + sd * torch.randn(
                mean.shape, generator=gen, device=self.device, dtype=mean.dtype
            )
            x_hat, _ = self._predict(z, t, c)
            post = self._table("post_x", t, z.dtype)
            std = self._table("post_std", t, z.dtype)
            terms.append((((post * (x_tilde - x_hat)) / std) ** 2).sum(-1).mul(0.5).T)
        diffusion = torch.cat(terms, -1) if terms else x_tilde.new_zeros(n, 0)
        mean, sd = self._marginal(x_tilde, 1)
        z1 = mean + sd * torch.randn(
            mean.shape, generator=gen, device=self.device, dtype=mean.dtype
        )
        decoder = -self._decoder(z1, c).log_prob(self._obs(x)) - self._log_det()
        return BoundTerms(prior, diffusion, decoder)

    def elbo(self, x: Any, y: Any = None, *, seed: int | None = None) -> torch.Tensor:
        """The diffusion bound's ELBO per row (nats), over all T steps: ELBO <= log p(x | y)."""
        return -self.bound_terms(x, y, seed=seed).total

    def nll(self, x: Any, y: Any = None, *, seed: int | None = None) -> torch.Tensor:
        """-ELBO per row, an upper bound on -log p(x | y) in nats (the harness protocol)."""
        return self.bound_terms(x, y, seed=seed).total

    # ------------------------------------------------------------------ sampling
    def _times(self, steps: int | None) -> list[int]:
        T = self.timesteps
        if steps is None:
            return list(range(T, 0, -1))
        steps = _check_steps(steps, T)
        grid = torch.linspace(1, T, steps, dtype=torch.float64).round().long().unique()
        return sorted(grid.tolist(), reverse=True)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        *,
        y: Any = None,
        steps: int | None = None,
        eta: float = 1.0,
        guidance: float | None = None,
        seed: int | None = None,
        return_chain: bool = False,
    ) -> Any:
        """n draws by ancestral sampling of the reverse chain (notes 2.1, 2.2.2.4).

        z_T ~ N(0, I); z_{t-1} ~ p(z_{t-1} | z_t) for t = T..2; x ~ p(x | z_1): levels
        (long) for discrete data, real rows otherwise; shape (n, D).

        ``steps`` < T runs the faster sampler over ``steps`` evenly spaced times
        T = τ_S > ... > τ_1 = 1 (Song et al. 2021, DDIM): from z_t to z_s (s < t),
        z_s = α_s x̂ + √(σ_s² - c²) ε̂ + c ξ, ε̂ = (z_t - α_t x̂) / σ_t, ξ ~ N(0, I),
        c² = η² σ_{t|s}² σ_s² / σ_t² (σ_{t|s}² = σ_t² - (α_t / α_s)² σ_s²). ``eta = 1``
        draws z_s from q(z_s | z_t, x̂): with every step (``steps=None``) exactly the
        model's reverse chain; ``eta = 0`` is deterministic but for the last draw from
        p(x | z_1). ``guidance`` w >= 0 (class-conditional models) uses
        (1 + w) f(z, y) - w f(z, ∅). ``steps`` and ``guidance`` default to the model's
        ``sample_steps`` and ``guidance``. Draws come from a local generator seeded by
        ``seed``. With ``return_chain`` also returns the list of (t, z_t) visited.
        """
        n = check_int(n, "n")
        c = self._label(self._check_y(y, n), torch.Size([n]), self.dtype)
        if not (isinstance(eta, int | float) and 0 <= eta <= 1):
            raise ConfigurationError(f"eta must lie in [0, 1], got {eta!r}")
        if guidance is None:
            guidance = self.guidance
        else:
            guidance = check_guidance(guidance, self.n_classes, self.p_uncond)
        times = self._times(self.sample_steps if steps is None else steps)
        gen = generator(seed, self.device)
        dtype = self.dtype

        def noise(shape: tuple[int, ...]) -> torch.Tensor:
            return torch.randn(shape, generator=gen, device=self.device, dtype=dtype)

        z = noise((n, self.data_dim))
        chain = [(times[0], z)]
        for t, s in itertools.pairwise(times):
            tt = torch.full((n,), t, dtype=torch.long, device=self.device)
            x_hat, _ = self._predict(z, tt, c, guidance)
            a_t, s_t = float(self._alpha[t]), float(self._sigma[t])
            a_s, s_s = float(self._alpha[s]), float(self._sigma[s])
            var_ts = s_t**2 - (a_t / a_s) ** 2 * s_s**2
            c2 = eta**2 * var_ts * s_s**2 / s_t**2
            eps_hat = (z - a_t * x_hat) / s_t
            z = a_s * x_hat + math.sqrt(max(s_s**2 - c2, 0.0)) * eps_hat
            if c2 > 0:
                z = z + math.sqrt(c2) * noise((n, self.data_dim))
            chain.append((s, z))
        decoder = self._decoder(z, c, guidance)
        if self.discrete:
            logits = decoder.base_dist.logits
            u = torch.rand(logits.shape, generator=gen, device=self.device, dtype=dtype)
            x = (logits - torch.log(-torch.log(u.clamp_min(1e-20)))).argmax(-1)  # Gumbel-max
        else:
            base = decoder.base_dist
            x_tilde = base.loc + base.scale * noise((n, self.data_dim))
            x = x_tilde * self.scale + self.shift
        return (x, chain) if return_chain else x

    # ------------------------------------------------------------------ the figures' tools
    @torch.no_grad()
    def encode(self, x: Any, t: Any, *, seed: int | None = None) -> torch.Tensor:
        """z_t ~ q(z_t | x) = N(α_t x̃, σ_t² I), the forward chain (eq. 16) in closed form.

        ``t`` an int (shape (n, D)) or a sequence of steps (shape (len(t), n, D)), each in
        1..T; x̃ is x on the chain's scale (levels mapped to [-1, 1], or standardised).
        """
        x = self._check_x(x)
        scalar = isinstance(t, int) and not isinstance(t, bool)
        steps = self._check_t([t] if scalar else t)
        if steps.dim() != 1:
            raise ShapeError(
                f"t must be an int or a 1-d sequence of steps, got shape {tuple(steps.shape)}"
            )
        x_tilde = self._x_tilde(x)
        mean, sd = self._marginal(x_tilde, steps[:, None].expand(-1, x.shape[0]))
        gen = generator(seed, self.device)
        z = mean + sd * torch.randn(mean.shape, generator=gen, device=self.device, dtype=mean.dtype)
        return z[0] if scalar else z

    @torch.no_grad()
    def denoise(self, z: Any, t: Any, *, y: Any = None, guidance: float = 0.0) -> torch.Tensor:
        """x̂(z_t, t), the network's estimate of E[x | z_t] on the data's scale: the mean
        level (a real number in 0..L-1) for discrete data. ``t`` an int or (n,) steps."""
        z = to_real_tensor(z, "z", dtype=self.dtype, device=self.device)
        check_shape(z, (None, self.data_dim), "z")
        check_finite(z, "z")
        n = z.shape[0]
        steps = self._check_t(t if not isinstance(t, int) or isinstance(t, bool) else [t] * n)
        check_shape(steps, (n,), "t")
        c = self._label(self._check_y(y, n), torch.Size([n]), z.dtype)
        x_hat, _ = self._predict(
            z, steps, c, check_guidance(guidance, self.n_classes, self.p_uncond)
        )
        return self.to_data_scale(x_hat)

    def to_data_scale(self, x_tilde: torch.Tensor) -> torch.Tensor:
        """x̃ (the chain's scale) back to the data's: (x̃ + 1) (L - 1) / 2, or x̃ sd + mean."""
        if self.discrete:
            return (x_tilde + 1) * (self.levels - 1) / 2  # type: ignore[operator]
        return x_tilde * self.scale + self.shift

    # ------------------------------------------------------------------ contract
    def graph(self) -> Any:
        """Figura 11: the reverse chain z_T -> ... -> z_1 -> x (the model), with the
        forward chain's arrows x -> z_1 -> ... -> z_T as the guide; three latent steps
        are drawn (z_T, z_t, z_1) and the label y when the model is conditional."""
        from pyrobn.graph import GraphNode, ModelGraph

        nodes = [
            GraphNode("z_T", "latent", label="$z_T$"),
            GraphNode("z_t", "latent", label="$z_t$"),
            GraphNode("z_1", "latent", label="$z_1$"),
            GraphNode("x", "observed", discrete=self.discrete, label="$x$"),
        ]
        edges = [("z_T", "z_t"), ("z_t", "z_1"), ("z_1", "x")]
        members = ["z_T", "z_t", "z_1", "x"]
        if self.n_classes:
            nodes.insert(0, GraphNode("y", "observed", discrete=True, label="$y$"))
            edges += [("y", "z_t"), ("y", "z_1"), ("y", "x")]
            members.insert(0, "y")
        nodes.append(GraphNode("theta", "parameter", label=r"$\theta$"))
        edges += [("theta", "z_t"), ("theta", "z_1"), ("theta", "x")]
        return ModelGraph(
            nodes, edges, plates={"data": (members, "N")},
            title="diffusion model: p(z_T) Π p(z_{t-1} | z_t) p(x | z_1)  (eq. 17)",
        )  # fmt: skip

    def forward_graph(self) -> Any:
        """The guide's network (eq. 16): x -> z_1 -> ... -> z_T, no parameters."""
        from pyrobn.graph import GraphNode, ModelGraph

        nodes = [
            GraphNode("x", "observed", discrete=self.discrete, label="$x$"),
            GraphNode("z_1", "latent", label="$z_1$"),
            GraphNode("z_t", "latent", label="$z_t$"),
            GraphNode("z_T", "latent", label="$z_T$"),
        ]
        return ModelGraph(
            nodes, [("x", "z_1"), ("z_1", "z_t"), ("z_t", "z_T")],
            plates={"data": (["x", "z_1", "z_t", "z_T"], "N")},
            title="forward chain: p_data(x) Π q(z_t | z_{t-1})  (eq. 16)",
        )  # fmt: skip

    def _check_state(self) -> None:
        super()._check_state()
        if not self.discrete and not bool((self.scale > 0).all()):
            from pyrobn.errors import NonFiniteError

            raise NonFiniteError("the standardisation scale must be positive")

    def __repr__(self) -> str:  # the network is long: show the configuration
        kind = f"levels={self.levels}" if self.discrete else "continuous"
        return (
            f"DiffusionModel(data_dim={self.data_dim}, {kind}, timesteps={self.timesteps}, "
            f"prediction={self.prediction!r}, n_classes={self.n_classes})"
        )


def _check_steps(steps: Any, T: int) -> int:
    steps = check_int(steps, "steps")
    if not min(2, T) <= steps <= T:
        raise ConfigurationError(
            f"steps must lie in {min(2, T)}..{T} (timesteps = {T}: the sampler starts at "
            f"t = T and ends at t = 1), got {steps}"
        )
    return steps


class _ParameterAverage:
    """An exponential moving average of a module's parameters, θ̄ <- d θ̄ + (1 - d) θ."""

    def __init__(self, module: torch.nn.Module, decay: float) -> None:
        self.module, self.decay = module, float(decay)
        self.params = [p for p in module.parameters()]
        self.shadow = [p.detach().clone() for p in self.params]

    @torch.no_grad()
    def update(self) -> None:
        torch._foreach_lerp_(self.shadow, [p.detach() for p in self.params], 1 - self.decay)

    @torch.no_grad()
    def copy_to_model(self) -> None:
        torch._foreach_copy_([p.detach() for p in self.params], self.shadow)

    def swapped(self) -> contextlib.AbstractContextManager[None]:
        """Within the block the module holds the average; its own values come back after."""

        @contextlib.contextmanager
        def block() -> Iterator[None]:
            saved = [p.detach().clone() for p in self.params]
            self.copy_to_model()
            try:
                yield
            finally:
                with torch.no_grad():
                    torch._foreach_copy_([p.detach() for p in self.params], saved)

        return block()
