"""Variational autoencoders as Pyro model/guide pairs, and the latent-space tools of the notes.

Lecture ("Autoencoder Variacional"): a latent-variable model p(x, z) = p(z) pθ(x | z)
with prior p(z) = N(0, I) and a decoder fθ giving the parameters of pθ(x | z); an
encoder hφ gives the approximate posterior qφ(z | x) = N(μφ(x), diag σφ²(x)). Jensen's
inequality gives the ELBO,

    log pθ(x) = ELBO(φ, θ; x) + KL(qφ(z | x) || pθ(z | x)) >= ELBO(φ, θ; x),
    ELBO = E_q[log pθ(x | z)] - KL(qφ(z | x) || p(z)),

maximised by SVI with reparametrised samples z = μ + σ ε, ε ~ N(0, I). The chapter
(2.2.2.2, Figura 9) draws the same model as a Bayesian network z -> x with the
inference arrow x -> z; 2.2.3 (eq. 19) conditions every factor on a label y; 2.2.4.2
interpolates in latent space and 2.2.4.3 (eq. 21) moves along attribute vectors.

Classes:
    :class:`VAE`             p(z) pθ(x | z), qφ(z | x)
    :class:`ConditionalVAE`  p(z) pθ(x | z, y), qφ(z | x, y)  (eq. 19)
    :class:`Autoencoder`     the deterministic AE of the lecture, MSE loss

:meth:`VAE.init_from_embedding` starts both networks from a given chart of the data
(e.g. Isomap's) before ELBO training. Training goes through :func:`pyrobn.infer.fit_svi`,
by default with Pyro's ``JitTrace_ELBO`` (the same estimator as ``Trace_ELBO``, compiled
by ``torch.jit``); see :meth:`VAE.fit` for when to turn the compilation off.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.infer import (
    ELBO,
    JitTrace_ELBO,
    JitTraceMeanField_ELBO,
    Trace_ELBO,
    TraceMeanField_ELBO,
)
from pyro.nn import PyroModule
from pyro.nn.module import to_pyro_module_
from pyro.optim import PyroOptim
from torch import nn

from pyrobn.device import to_tensor
from pyrobn.errors import ConfigurationError, OutOfSupportError, PyrobnValueError, ShapeError
from pyrobn.infer.optim import FusedAdam
from pyrobn.infer.svi import History, fit_svi
from pyrobn.models.base import PyrobnModule
from pyrobn.nn import ACTIVATIONS, check_sizes, encoder_decoder
from pyrobn.validation import (
    check_finite,
    check_int,
    check_integers_in_range,
    check_positive,
    check_shape,
)

#: the observation families of pθ(x | z) (lecture: Normal -> MSE, Bernoulli -> BCE)
LIKELIHOODS = ("bernoulli", "continuous_bernoulli", "normal")
_UNIT_INTERVAL = ("bernoulli", "continuous_bernoulli")

#: ``loss=`` names of :meth:`VAE.fit` -> (eager ELBO, compiled ELBO)
_ELBOS: dict[str, tuple[type[ELBO], type[ELBO]]] = {
    "trace": (Trace_ELBO, JitTrace_ELBO),
    "meanfield": (TraceMeanField_ELBO, JitTraceMeanField_ELBO),
}

# rows of data per chunk x samples x features kept under this many numbers in evaluation
_EVAL_BUDGET = 2**22


# --------------------------------------------------------------------------- helpers


def lerp(z0: torch.Tensor, z1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Linear interpolation z_t = (1 - t) z0 + t z1 (notes 2.2.4.2), shape (T, *z0.shape)."""
    t = t.reshape(-1, *([1] * z0.dim()))
    return (1 - t) * z0 + t * z1


def slerp(z0: torch.Tensor, z1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation (notes 2.2.4.2: "e.g., slerp"), shape (T, *z0.shape).

    z_t = sin((1 - t) Ω) / sin Ω · z0 + sin(t Ω) / sin Ω · z1, with Ω the angle between
    z0 and z1 (per row of a batch). Between vectors of equal norm the path stays on
    their sphere and the angle moves uniformly in t; where Ω is ~0 (or a vector is 0)
    it falls back to :func:`lerp`.
    """
    t = t.reshape(-1, *([1] * z0.dim()))
    norms = z0.norm(dim=-1, keepdim=True) * z1.norm(dim=-1, keepdim=True)
    tiny = torch.finfo(z0.dtype).eps
    cos = ((z0 * z1).sum(-1, keepdim=True) / norms.clamp_min(tiny)).clamp(-1.0, 1.0)
    omega = torch.acos(cos)
    sin_omega = torch.sin(omega)
    degenerate = sin_omega < 1e-4
    safe = torch.where(degenerate, torch.ones_like(sin_omega), sin_omega)
    a = torch.where(degenerate, 1 - t, torch.sin((1 - t) * omega) / safe)
    b = torch.where(degenerate, t, torch.sin(t * omega) / safe)
    return a * z0 + b * z1


_INTERPOLATIONS = {"linear": lerp, "slerp": slerp}


@contextlib.contextmanager
def _seeded(seed: int | None, device: torch.device) -> Iterator[None]:
    """Draw from ``torch.manual_seed(seed)`` inside, leaving the global RNG untouched."""
    if seed is None:
        yield
        return
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(seed))
        yield


def _chunks(n: int, per_row: int) -> Iterator[slice]:
    size = max(1, _EVAL_BUDGET // max(1, per_row))
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def make_elbo(loss: str | ELBO, jit: bool | None = None, num_particles: int = 1) -> ELBO:
    """The Pyro ELBO named by ``loss`` ("trace" or "meanfield"), compiled when ``jit``.

    An ELBO instance is returned unchanged. "trace" estimates the whole ELBO by Monte
    Carlo; "meanfield" uses the lecture's closed-form Gaussian KL,
    KL(N(μ, σ²) || N(0, 1)) = -½ Σ_m (1 + log σ_m² - μ_m² - σ_m²).
    ``jit=None`` picks the faster path measured by ``bench/vae.py``: ``JitTrace_ELBO``
    for "trace" (about 1.3x faster than eager on CPU), the eager ``TraceMeanField_ELBO``
    for "meanfield" (Pyro's ``JitTraceMeanField_ELBO`` runs about 10x slower per step).
    """
    if isinstance(loss, ELBO):
        return loss
    if loss not in _ELBOS:
        raise ConfigurationError(f"unknown loss {loss!r}; choose one of {sorted(_ELBOS)}")
    check_int(num_particles, "num_particles")
    eager, compiled = _ELBOS[loss]
    if jit is None:
        jit = loss == "trace"
    if jit:
        return compiled(num_particles=num_particles, ignore_jit_warnings=True)
    return eager(num_particles=num_particles)


class _Likelihood(PyroModule):
    """pθ(x | z) from the decoder's output: Bernoulli / continuous Bernoulli logits, or a
    Normal mean with a per-feature scale σ, learned (``scale=None``) or fixed (the
    lecture's MSE: -log N(x | m, σ²) = ||x - m||² / (2σ²) + const)."""

    def __init__(self, kind: str, data_dim: int, scale: float | None = None) -> None:
        super().__init__()
        self.kind = kind
        if kind == "normal":
            if scale is None:
                self.log_scale = nn.Parameter(torch.zeros(data_dim))
            else:
                self.register_buffer("log_scale", torch.full((data_dim,), math.log(scale)))

    def forward(self, out: torch.Tensor) -> dist.TorchDistribution:
        if self.kind == "bernoulli":
            # validate_args=False: values in [0, 1] are allowed (binary cross-entropy)
            base = dist.Bernoulli(logits=out, validate_args=False)
        elif self.kind == "continuous_bernoulli":
            base = dist.ContinuousBernoulli(logits=out, validate_args=False)
        else:
            base = dist.Normal(out, self.log_scale.exp(), validate_args=False)
        return dist.Independent(base, 1, validate_args=False)

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        """E[x | z] from the decoder output."""
        if self.kind == "bernoulli":
            return torch.sigmoid(out)
        if self.kind == "continuous_bernoulli":
            return torch.distributions.ContinuousBernoulli(logits=out, validate_args=False).mean
        return out


# --------------------------------------------------------------------------- shared base


class _AutoencodingModel(PyrobnModule):
    """Networks, boundary checks and the ``fit`` wrapper shared by the three classes."""

    data_dim: int
    latent_dim: int

    def _init_common(
        self, data_dim: int, latent_dim: int, hidden: Sequence[int], activation: str
    ) -> tuple[int, ...]:
        self.data_dim = check_int(data_dim, "data_dim")
        self.latent_dim = check_int(latent_dim, "latent_dim")
        if activation not in ACTIVATIONS:
            raise ConfigurationError(
                f"unknown activation {activation!r}; choose one of {sorted(ACTIVATIONS)}"
            )
        return check_sizes(hidden, "hidden")

    def _set_networks(self, encoder: nn.Sequential, decoder: nn.Sequential) -> None:
        # PyroModule versions: their parameters become Pyro param sites when called.
        self.encoder = to_pyro_module_(encoder) or encoder
        self.decoder = to_pyro_module_(decoder) or decoder

    @property
    def dtype(self) -> torch.dtype:
        """The floating dtype of the parameters (inputs are converted to it)."""
        return next(self.parameters()).dtype

    # -- boundary checks ---------------------------------------------------------------
    def _support_note(self) -> str | None:
        return None

    def _check_x(self, x: Any, name: str = "x", *, matrix: bool = False) -> torch.Tensor:
        """``x`` as a tensor on the model's device and dtype, shape (n, D) or (..., D)."""
        x = to_tensor(x, dtype=self.dtype, device_=self.device)
        if matrix:
            check_shape(x, (None, self.data_dim), name)
        elif x.dim() == 0 or x.shape[-1] != self.data_dim:
            raise ShapeError(
                f"{name} must have shape (..., {self.data_dim}) (data_dim = {self.data_dim}), "
                f"got {tuple(x.shape)}"
            )
        check_finite(x, name)
        note = self._support_note()
        if note is not None:
            bad = (x < 0) | (x > 1)
            if bad.any():
                index = tuple(int(i) for i in bad.nonzero()[0].tolist())
                raise OutOfSupportError(
                    f"{name}{list(index)} = {x[index].item():.6g} lies outside [0, 1], {note}"
                )
        return x

    def _check_z(self, z: Any, name: str = "z") -> torch.Tensor:
        z = to_tensor(z, dtype=self.dtype, device_=self.device)
        if z.dim() == 0 or z.shape[-1] != self.latent_dim:
            raise ShapeError(
                f"{name} must have shape (..., {self.latent_dim}) (latent_dim = "
                f"{self.latent_dim}), got {tuple(z.shape)}"
            )
        return check_finite(z, name)

    # -- training ------------------------------------------------------------------------
    def _sync_param_store(self) -> None:
        """Drop stale param-store entries of this module (e.g. left by a ``.to()`` copy)."""
        store = pyro.get_param_store()
        for name, param in self.named_parameters():
            full = f"{self._pyro_name}.{name}"
            if full in store and store[full].unconstrained() is not param:
                del store[full]

    def _fit(
        self,
        model: Callable[..., Any],
        guide: Callable[..., Any],
        args: tuple[Any, ...],
        *,
        steps: int,
        batch_size: int | None,
        lr: float,
        loss: str | ELBO,
        jit: bool | None,
        num_particles: int,
        optim: PyroOptim | None,
        **kwargs: Any,
    ) -> History:
        n = args[0].shape[0]
        if batch_size is not None:
            check_int(batch_size, "batch_size")
        check_positive(lr, "lr")
        subsample = None if batch_size is None or batch_size >= n else int(batch_size)
        self._sync_param_store()
        kwargs.setdefault("description", type(self).__name__)
        return fit_svi(
            model,
            guide,
            *args,
            batch_size=subsample,
            loss=make_elbo(loss, jit, num_particles),
            optim=optim if optim is not None else FusedAdam(lr=lr),
            steps=steps,
            **kwargs,
        )


class _LatentTools:
    """Latent-space tools of notes 2.2.4.2-2.2.4.3 over ``encode`` (posterior mean) and
    ``decode`` (mean of p(x | z))."""

    def encode(self, x: Any) -> torch.Tensor:  # pragma: no cover - defined by subclasses
        raise NotImplementedError

    def decode(self, z: Any) -> torch.Tensor:  # pragma: no cover - defined by subclasses
        raise NotImplementedError

    @torch.no_grad()
    def interpolate(self, x0: Any, x1: Any, steps: int = 8, method: str = "linear") -> torch.Tensor:
        """Decode a path z_t from encoder(x0) to encoder(x1), t = 0 .. 1 (notes 2.2.4.2).

        ``method="linear"``: z_t = t z1 + (1 - t) z0; ``"slerp"``: spherical
        interpolation (:func:`slerp`). x0, x1 of shape (D,) give (steps, D); a batch of
        pairs (B, D) gives (B, steps, D), one interpolation row per pair.

        >>> rows = vae.interpolate(x[0], x[1], steps=10)
        """
        check_int(steps, "steps", low=2)
        if method not in _INTERPOLATIONS:
            raise ConfigurationError(
                f"unknown interpolation {method!r}; choose one of {sorted(_INTERPOLATIONS)}"
            )
        z0, z1 = self.encode(x0), self.encode(x1)
        if z0.shape != z1.shape:
            raise ShapeError(
                f"x0 and x1 must have one shape, got {tuple(z0.shape)[:-1]} and "
                f"{tuple(z1.shape)[:-1]} rows"
            )
        t = torch.linspace(0, 1, steps, dtype=z0.dtype, device=z0.device)
        path = _INTERPOLATIONS[method](z0, z1, t)  # (steps, ..., L)
        return self.decode(path).movedim(0, -2)

    @torch.no_grad()
    def attribute_vector(self, x_pos: Any, x_neg: Any) -> torch.Tensor:
        """z_attribute = z⁺ - z⁻, the difference of the latent centroids (eq. 21).

        z± = (1/|X±|) Σ_{x ∈ X±} encoder(x), with encoder(x) the posterior mean.
        """
        z_pos = self.encode(x_pos).reshape(-1, self.latent_dim)  # type: ignore[attr-defined]
        z_neg = self.encode(x_neg).reshape(-1, self.latent_dim)  # type: ignore[attr-defined]
        if len(z_pos) == 0 or len(z_neg) == 0:
            raise ShapeError("attribute_vector needs at least one sample in x_pos and x_neg")
        return z_pos.mean(0) - z_neg.mean(0)

    @torch.no_grad()
    def shift(self, x: Any, vector: Any, lam: float | Sequence[float] | torch.Tensor = 1.0):
        """x_λ = decoder(encoder(x) + λ z_attribute) (notes 2.2.4.3, after eq. 21).

        λ > 0 strengthens the attribute, λ < 0 weakens it. A scalar λ gives the shape of
        x; a sequence of λ gives (len(λ), *x.shape).
        """
        z = self.encode(x)
        vector = self._check_z(vector, "vector")  # type: ignore[attr-defined]
        lam_t = torch.as_tensor(lam, dtype=z.dtype, device=z.device)
        check_finite(lam_t, "lam")
        if lam_t.dim() > 1:
            raise ShapeError(f"lam must be a number or a 1-D sequence, got {tuple(lam_t.shape)}")
        shifted = z + lam_t.reshape(*lam_t.shape, *([1] * z.dim())) * vector
        return self.decode(shifted)


# --------------------------------------------------------------------------- VAE core


class _GaussianLatentModel(_AutoencodingModel):
    """The VAE of the lecture with an optional one-hot condition c (eq. 19).

    Private methods take the condition as a one-hot tensor ``c`` (or None); the public
    classes wrap them with their own signatures.
    """

    def _init_vae(
        self,
        data_dim: int,
        latent_dim: int,
        hidden: Sequence[int],
        likelihood: str,
        activation: str,
        n_classes: int,
        obs_scale: float | None,
    ) -> None:
        hidden = self._init_common(data_dim, latent_dim, hidden, activation)
        if likelihood not in LIKELIHOODS:
            raise ConfigurationError(
                f"unknown likelihood {likelihood!r}; choose one of {list(LIKELIHOODS)}"
            )
        if obs_scale is not None:
            if likelihood != "normal":
                raise ConfigurationError(
                    f"obs_scale is the σ of the 'normal' likelihood; {likelihood!r} has none"
                )
            check_positive(obs_scale, "obs_scale")
        self.likelihood_name = likelihood
        self.n_classes = n_classes
        encoder, decoder = encoder_decoder(
            data_dim, latent_dim, hidden, activation, condition_dim=n_classes
        )
        self._set_networks(encoder, decoder)
        self.likelihood = _Likelihood(likelihood, data_dim, obs_scale)

    def _support_note(self) -> str | None:
        if self.likelihood_name in _UNIT_INTERVAL:
            return (
                f"the support of the {self.likelihood_name!r} likelihood (scale the data to "
                "[0, 1], or use likelihood='normal')"
            )
        return None

    # -- networks ----------------------------------------------------------------------
    @staticmethod
    def _join(a: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        if c is None:
            return a
        return torch.cat([a, c.expand(*a.shape[:-1], c.shape[-1])], -1)

    def _posterior(
        self, x: torch.Tensor, c: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(μφ, σφ) of q(z | x[, y]): the encoder gives μ and log σ² (lecture)."""
        h = self.encoder(self._join(x, c))
        loc, log_var = h.split(self.latent_dim, dim=-1)
        return loc, torch.exp(0.5 * log_var)

    def _decoder_out(self, z: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        return self.decoder(self._join(z, c))

    def _one_hot(self, y: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
        return None if y is None else F.one_hot(y, self.n_classes).to(dtype)

    # -- model / guide (eq. 19 with c = y; plain VAE with c = None) ---------------------
    def _model(
        self, x: torch.Tensor, y: torch.Tensor | None, batch_size: int | None
    ) -> torch.Tensor:
        n = x.shape[0]
        with pyro.plate("data", n, subsample_size=batch_size, device=x.device) as idx:
            xb = x if batch_size is None else x[idx]
            c = self._one_hot(None if y is None else (y if batch_size is None else y[idx]), x.dtype)
            zeros = xb.new_zeros(xb.shape[0], self.latent_dim)
            prior = dist.Independent(
                dist.Normal(zeros, torch.ones_like(zeros), validate_args=False),
                1,
                validate_args=False,
            )
            z = pyro.sample("z", prior)
            return pyro.sample("x", self.likelihood(self._decoder_out(z, c)), obs=xb)

    def _guide(self, x: torch.Tensor, y: torch.Tensor | None, batch_size: int | None) -> None:
        n = x.shape[0]
        with pyro.plate("data", n, subsample_size=batch_size, device=x.device) as idx:
            xb = x if batch_size is None else x[idx]
            c = self._one_hot(None if y is None else (y if batch_size is None else y[idx]), x.dtype)
            loc, scale = self._posterior(xb, c)
            pyro.sample(
                "z",
                dist.Independent(
                    dist.Normal(loc, scale, validate_args=False), 1, validate_args=False
                ),
            )

    # -- evaluation -----------------------------------------------------------------------
    def _log_weights(
        self, x: torch.Tensor, c: torch.Tensor | None, num_samples: int
    ) -> torch.Tensor:
        """log w_k = log pθ(x | z_k) + log p(z_k) - log qφ(z_k | x), z_k ~ q; shape (K, n)."""
        loc, scale = self._posterior(x, c)
        q = torch.distributions.Normal(loc, scale, validate_args=False)
        z = q.rsample((num_samples,))  # the same draws as the guide's (K = 1)
        log_q = q.log_prob(z).sum(-1)
        log_prior = (-0.5 * z.pow(2) - 0.5 * math.log(2 * math.pi)).sum(-1)
        log_lik = self.likelihood(self._decoder_out(z, c)).log_prob(x)
        return log_lik + log_prior - log_q

    @torch.no_grad()
    def _evaluate(
        self,
        x: torch.Tensor,
        c: torch.Tensor | None,
        num_samples: int,
        seed: int | None,
        reduce: str,
    ) -> torch.Tensor:
        check_int(num_samples, "num_samples")
        out = []
        per_row = num_samples * (self.data_dim + self.latent_dim)
        with _seeded(seed, x.device):
            for rows in _chunks(x.shape[0], per_row):
                log_w = self._log_weights(x[rows], None if c is None else c[rows], num_samples)
                if reduce == "mean":
                    out.append(log_w.mean(0))
                else:
                    out.append(torch.logsumexp(log_w, 0) - math.log(num_samples))
        return torch.cat(out)

    @torch.no_grad()
    def _sample(self, c: torch.Tensor | None, n: int, seed: int | None, mean: bool) -> torch.Tensor:
        with _seeded(seed, self.device):
            z = torch.randn(n, self.latent_dim, dtype=self.dtype, device=self.device)
            out = self._decoder_out(z, c)
            if mean:
                return self.likelihood.mean(out)
            return self.likelihood(out).sample()


# --------------------------------------------------------------------------- public classes


class VAE(_GaussianLatentModel, _LatentTools):
    """Variational autoencoder: p(z) = N(0, I), pθ(x | z), qφ(z | x) = N(μφ(x), diag σφ²(x)).

    Lecture ("Autoencoder Variacional"); chapter 2.2.2.2 (Figura 9). The encoder hφ is
    an MLP ``data_dim -> hidden... -> 2 latent_dim`` giving μ and log σ²; the decoder fθ
    mirrors it and gives the parameters of pθ(x | z):

    - ``"bernoulli"``: logits; log p is minus the binary cross-entropy (BCE). For data
      strictly in {0, 1} it is a normalised log-likelihood; for grey values in [0, 1]
      it is the usual BCE objective but not a normalised density.
    - ``"continuous_bernoulli"``: logits of the continuous Bernoulli, a normalised density
      on [0, 1] (Loaiza-Ganem & Cunningham 2019).
    - ``"normal"``: the mean, with a per-feature scale σ: learned, or fixed by
      ``obs_scale`` (then -log p is the lecture's squared error / 2σ² + const). A learned
      σ can explain low-dimensional data as noise and leave z unused (posterior
      collapse); fixing σ near the data's noise level keeps the latent code informative.

    ``model(x)`` / ``guide(x)`` subsample the data plate with ``batch_size``.

    >>> x_train, y_train, x_test, y_test = pyrobn.datasets.digits(binarize=True)
    >>> vae = pyrobn.VAE(64, latent_dim=2, hidden=(128,))
    >>> history = vae.fit(x_train, steps=3000, seed=0, progress=False)
    >>> vae.log_likelihood(x_test, num_samples=1000).mean()
    """

    def __init__(
        self,
        data_dim: int,
        latent_dim: int = 2,
        hidden: Sequence[int] = (256, 128),
        likelihood: str = "bernoulli",
        activation: str = "relu",
        obs_scale: float | None = None,
    ) -> None:
        super().__init__(
            data_dim=data_dim,
            latent_dim=latent_dim,
            hidden=list(hidden),
            likelihood=likelihood,
            activation=activation,
            obs_scale=obs_scale,
        )
        self._init_vae(data_dim, latent_dim, hidden, likelihood, activation, 0, obs_scale)

    def model(self, x: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
        """z_i ~ N(0, I), x_i ~ pθ(x | z_i) for a subsample of ``batch_size`` rows of x."""
        return self._model(x, None, batch_size)

    def guide(self, x: torch.Tensor, batch_size: int | None = None) -> None:
        """z_i ~ qφ(z | x_i) = N(μφ(x_i), diag σφ²(x_i)) (reparametrised)."""
        self._guide(x, None, batch_size)

    def fit(
        self,
        x: Any,
        *,
        steps: int = 2000,
        batch_size: int | None = 128,
        lr: float = 1e-3,
        loss: str | ELBO = "trace",
        jit: bool | None = None,
        num_particles: int = 1,
        optim: PyroOptim | None = None,
        **kwargs: Any,
    ) -> History:
        """Maximise the ELBO over x with :func:`pyrobn.infer.fit_svi` (Adam, minibatches).

        ``loss="trace"`` (``Trace_ELBO``: Monte Carlo ELBO) or ``"meanfield"``
        (``TraceMeanField_ELBO``: the lecture's closed-form Gaussian KL term); or any Pyro
        ELBO instance. ``jit=None`` takes the fast path: for "trace" Pyro's
        ``JitTrace_ELBO`` (the same estimator compiled by ``torch.jit``, about 1.3x
        faster per step on CPU); for "meanfield" the eager ELBO, because Pyro's
        ``JitTraceMeanField_ELBO`` is about 10x slower here (``bench/vae.py``). The
        compiled path is safe for these models: their structure is static and every
        tensor reaches them through the arguments. Pass ``jit=False`` when: the run is
        short (compiling costs about a second, a few hundred eager steps of a small
        network); you debug (Pyro's site validation and readable tracebacks only run
        eagerly); or you change the model's code between calls of one loss object. Other
        keyword arguments (``seed``, ``progress``, ``callback``, ``checkpoint``, ...) go
        to :func:`fit_svi`. Raises ``TrainingDiverged`` (parameters rolled back) on NaN/inf.
        """
        x = self._check_x(x, matrix=True)
        return self._fit(
            self.model,
            self.guide,
            (x,),
            steps=steps,
            batch_size=batch_size,
            lr=lr,
            loss=loss,
            jit=jit,
            num_particles=num_particles,
            optim=optim,
            **kwargs,
        )

    @torch.no_grad()
    def encode(self, x: Any, *, return_scale: bool = False):
        """μφ(x), the posterior mean (and σφ(x) if ``return_scale``); x of shape (..., D)."""
        loc, scale = self._posterior(self._check_x(x), None)
        return (loc, scale) if return_scale else loc

    @torch.no_grad()
    def decode(self, z: Any) -> torch.Tensor:
        """E[x | z] under pθ(x | z) (probabilities for Bernoulli), z of shape (..., L)."""
        return self.likelihood.mean(self._decoder_out(self._check_z(z), None))

    def reconstruct(self, x: Any) -> torch.Tensor:
        """decode(encode(x)): the mean of pθ(x | z = μφ(x))."""
        return self.decode(self.encode(x))

    def sample(self, n: int, *, seed: int | None = None, mean: bool = False) -> torch.Tensor:
        """Ancestral samples (chapter 2.1): z ~ N(0, I), then x ~ pθ(x | z); shape (n, D).

        ``mean=True`` returns E[x | z] instead of a draw (the usual "generated image").
        """
        check_int(n, "n")
        return self._sample(None, n, seed, mean)

    def elbo(self, x: Any, *, num_samples: int = 1, seed: int | None = None) -> torch.Tensor:
        """Per-row ELBO E_q[log pθ(x, z) - log qφ(z | x)], averaged over ``num_samples``
        reparametrised draws; shape (n,). ELBO <= log pθ(x) (Jensen, lecture)."""
        x = self._check_x(x, matrix=True)
        return self._evaluate(x, None, num_samples, seed, "mean")

    def log_likelihood(
        self, x: Any, *, num_samples: int = 1000, seed: int | None = None
    ) -> torch.Tensor:
        """Importance-weighted estimate of log pθ(x) (eq. 20 with q as proposal); shape (n,).

        log p̂(x) = logsumexp_k [log pθ(x, z_k) - log qφ(z_k | x)] - log K, z_k ~ qφ(z | x).
        Its expectation rises with K from the ELBO (K = 1) to log pθ(x) (Burda et al.
        2016): the honest number to compare models by.
        """
        x = self._check_x(x, matrix=True)
        return self._evaluate(x, None, num_samples, seed, "logsumexp")

    # -- a start from a given chart ------------------------------------------------------
    def _chart_model(
        self, x: torch.Tensor, chart: torch.Tensor, log_var: float, batch_size: int | None
    ) -> None:
        """Log-factors of :meth:`init_from_embedding`: -||μφ(x) - e||² - 0.01 ||log σφ²(x)
        - log s²||² (encoder) and log pθ(x | z = e) (decoder), per row of a subsample."""
        with pyro.plate("data", x.shape[0], subsample_size=batch_size, device=x.device) as idx:
            xb, eb = (x, chart) if batch_size is None else (x[idx], chart[idx])
            loc, scale = self._posterior(xb, None)
            misfit = (loc - eb).pow(2).sum(-1) + 0.01 * (2 * scale.log() - log_var).pow(2).sum(-1)
            pyro.factor("encoder_to_chart", -misfit)
            pyro.factor(
                "decoder_from_chart", self.likelihood(self._decoder_out(eb, None)).log_prob(xb)
            )

    def _chart_guide(
        self, x: torch.Tensor, chart: torch.Tensor, log_var: float, batch_size: int | None
    ) -> None:
        with pyro.plate("data", x.shape[0], subsample_size=batch_size, device=x.device):
            pass

    def init_from_embedding(
        self,
        x: Any,
        embedding: Any,
        *,
        steps: int = 1000,
        batch_size: int | None = 256,
        lr: float = 3e-3,
        posterior_scale: float = 0.05,
        **kwargs: Any,
    ) -> History:
        """Start the encoder and decoder from a given chart of x, before :meth:`fit`.

        ``embedding`` (n, latent_dim) holds coordinates of the rows of x from another
        method (Isomap, PCA, ...: the start t-SNE takes from PCA and UMAP from a spectral
        embedding). Each column is standardised, e = (embedding - mean) / std, to the
        scale of the prior N(0, I); then Adam minimises over minibatches

            ||μφ(x_i) - e_i||² + 0.01 ||log σφ²(x_i) - log s²||² - log pθ(x_i | z = e_i),

        with s = ``posterior_scale``: the encoder maps x_i to its chart point with a narrow
        posterior and the decoder inverts the chart. :meth:`fit` then maximises the ELBO
        from there; keep its learning rate small (the default 1e-3): at 3e-3 the first
        Adam steps broke the swiss-roll chart in 1 of 40 initialisations, at 1e-3 in none
        of 80. Why: the ELBO's gradient from a random start folds a rolled-up manifold
        into a local optimum. On the swiss roll the unrolled chart stays unrolled under
        ELBO training and scores higher than random starts do (held-out ELBO -4.5 to -6.3
        nats per point against -6.0 to -38, higher in each of 40 paired runs; tutorial 09,
        ``examples/swiss_roll_starts.py``). Other keyword arguments go to
        :func:`fit_svi`; returns its history of -(objective above).
        """
        x = self._check_x(x, matrix=True)
        chart = to_tensor(embedding, dtype=self.dtype, device_=self.device)
        check_shape(chart, (x.shape[0], self.latent_dim), "embedding")
        check_finite(chart, "embedding")
        check_positive(posterior_scale, "posterior_scale")
        std = chart.std(0) if x.shape[0] > 1 else chart.new_zeros(self.latent_dim)
        if not bool((std > 0).all()):
            column = int((std > 0).logical_not().nonzero()[0])
            raise PyrobnValueError(
                f"embedding column {column} is constant over the {x.shape[0]} rows; a chart "
                "needs a spread in every latent direction"
            )
        chart = (chart - chart.mean(0)) / std
        kwargs.setdefault("description", f"{type(self).__name__} chart start")
        return self._fit(
            self._chart_model,
            self._chart_guide,
            (x, chart, 2 * math.log(posterior_scale)),
            steps=steps,
            batch_size=batch_size,
            lr=lr,
            loss="trace",
            jit=False,
            num_particles=1,
            optim=None,
            **kwargs,
        )


class ConditionalVAE(_GaussianLatentModel):
    """Conditional VAE (notes 2.2.3, eq. 19): p(z) pθ(x | z, y), qφ(z | x, y).

    The label y enters both networks as a one-hot vector concatenated to their input
    (the notes' "concatenar el valor de y"). ``sample(n, y=c)`` generates class c.

    >>> cvae = pyrobn.ConditionalVAE(64, n_classes=10, latent_dim=8)
    >>> cvae.fit(x_train, y_train, steps=3000, progress=False)
    >>> sevens = cvae.sample(16, y=7, mean=True)
    """

    def __init__(
        self,
        data_dim: int,
        n_classes: int,
        latent_dim: int = 2,
        hidden: Sequence[int] = (256, 128),
        likelihood: str = "bernoulli",
        activation: str = "relu",
        obs_scale: float | None = None,
    ) -> None:
        super().__init__(
            data_dim=data_dim,
            n_classes=n_classes,
            latent_dim=latent_dim,
            hidden=list(hidden),
            likelihood=likelihood,
            activation=activation,
            obs_scale=obs_scale,
        )
        self._init_vae(
            data_dim,
            latent_dim,
            hidden,
            likelihood,
            activation,
            check_int(n_classes, "n_classes", 2),
            obs_scale,
        )

    def _check_y(self, y: Any, n: int | None = None, name: str = "y") -> torch.Tensor:
        if isinstance(y, int) and not isinstance(y, bool):
            y = torch.full((n if n is not None else 1,), y)
        y = to_tensor(y, device_=self.device)
        check_shape(y, (n,), name)
        return check_integers_in_range(y, 0, self.n_classes, name).long()

    def _condition(self, x: Any, y: Any) -> tuple[torch.Tensor, torch.Tensor]:
        x = self._check_x(x, matrix=True)
        y = self._check_y(y, x.shape[0])
        return x, self._one_hot(y, x.dtype)

    def model(
        self, x: torch.Tensor, y: torch.Tensor, batch_size: int | None = None
    ) -> torch.Tensor:
        """z_i ~ N(0, I), x_i ~ pθ(x | z_i, y_i)."""
        return self._model(x, y, batch_size)

    def guide(self, x: torch.Tensor, y: torch.Tensor, batch_size: int | None = None) -> None:
        """z_i ~ qφ(z | x_i, y_i)."""
        self._guide(x, y, batch_size)

    def fit(
        self,
        x: Any,
        y: Any,
        *,
        steps: int = 2000,
        batch_size: int | None = 128,
        lr: float = 1e-3,
        loss: str | ELBO = "trace",
        jit: bool | None = None,
        num_particles: int = 1,
        optim: PyroOptim | None = None,
        **kwargs: Any,
    ) -> History:
        """As :meth:`VAE.fit`, with the labels y (ints in {0, ..., n_classes - 1})."""
        x = self._check_x(x, matrix=True)
        y = self._check_y(y, x.shape[0])
        return self._fit(
            self.model,
            self.guide,
            (x, y),
            steps=steps,
            batch_size=batch_size,
            lr=lr,
            loss=loss,
            jit=jit,
            num_particles=num_particles,
            optim=optim,
            **kwargs,
        )

    @torch.no_grad()
    def encode(self, x: Any, y: Any) -> torch.Tensor:
        """μφ(x, y), the posterior mean; shape (n, L)."""
        x, c = self._condition(x, y)
        return self._posterior(x, c)[0]

    @torch.no_grad()
    def decode(self, z: Any, y: Any) -> torch.Tensor:
        """E[x | z, y]; z of shape (n, L), y an int or n labels."""
        z = self._check_z(z)
        if z.dim() != 2:
            raise ShapeError(f"z must have shape (n, {self.latent_dim}), got {tuple(z.shape)}")
        c = self._one_hot(self._check_y(y, z.shape[0]), z.dtype)
        return self.likelihood.mean(self._decoder_out(z, c))

    def reconstruct(self, x: Any, y: Any) -> torch.Tensor:
        """decode(encode(x, y), y)."""
        return self.decode(self.encode(x, y), y)

    def sample(
        self, n: int, y: Any, *, seed: int | None = None, mean: bool = False
    ) -> torch.Tensor:
        """z ~ N(0, I), x ~ pθ(x | z, y): n samples of class y (an int, or n labels)."""
        check_int(n, "n")
        c = self._one_hot(self._check_y(y, n), self.dtype)
        return self._sample(c, n, seed, mean)

    def elbo(
        self, x: Any, y: Any, *, num_samples: int = 1, seed: int | None = None
    ) -> torch.Tensor:
        """Per-row ELBO of log pθ(x | y); shape (n,)."""
        x, c = self._condition(x, y)
        return self._evaluate(x, c, num_samples, seed, "mean")

    def log_likelihood(
        self, x: Any, y: Any, *, num_samples: int = 1000, seed: int | None = None
    ) -> torch.Tensor:
        """Importance-weighted estimate of log pθ(x | y); shape (n,)."""
        x, c = self._condition(x, y)
        return self._evaluate(x, c, num_samples, seed, "logsumexp")


class Autoencoder(_AutoencodingModel, _LatentTools):
    """The deterministic autoencoder of the lecture: z = hφ(x), x̂ = fθ(z), loss MSE.

    L_recon = (1/N) Σ_i ||x_i - fθ(hφ(x_i))||² (lecture, "Autoencoder (AE)"), written as
    a Pyro model with the factor exp(-||x - x̂||²) per row, so it trains through the same
    :func:`fit_svi` loop (the guide is empty: nothing is latent). No prior on z: it
    compresses but does not generate, the "diferencia conceptual" with the VAE.
    ``sigmoid_output=True`` maps the reconstruction into (0, 1), for images.

    >>> ae = pyrobn.Autoencoder(64, latent_dim=2, sigmoid_output=True)
    >>> ae.fit(x_train, steps=3000, progress=False)
    >>> ae.mse(x_test)
    """

    def __init__(
        self,
        data_dim: int,
        latent_dim: int = 2,
        hidden: Sequence[int] = (256, 128),
        activation: str = "relu",
        sigmoid_output: bool = False,
    ) -> None:
        super().__init__(
            data_dim=data_dim,
            latent_dim=latent_dim,
            hidden=list(hidden),
            activation=activation,
            sigmoid_output=sigmoid_output,
        )
        hidden = self._init_common(data_dim, latent_dim, hidden, activation)
        self.sigmoid_output = bool(sigmoid_output)
        self._set_networks(
            *encoder_decoder(data_dim, latent_dim, hidden, activation, encoder_outputs=1)
        )

    def _reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        out = self.decoder(self.encoder(x))
        return torch.sigmoid(out) if self.sigmoid_output else out

    def model(self, x: torch.Tensor, batch_size: int | None = None) -> None:
        """log-factor -||x_i - fθ(hφ(x_i))||² per row of a subsample (the MSE loss)."""
        with pyro.plate("data", x.shape[0], subsample_size=batch_size, device=x.device) as idx:
            xb = x if batch_size is None else x[idx]
            pyro.factor("reconstruction", -(self._reconstruct(xb) - xb).pow(2).sum(-1))

    def guide(self, x: torch.Tensor, batch_size: int | None = None) -> None:
        """Nothing is latent; the plate only draws the subsample the model reuses."""
        with pyro.plate("data", x.shape[0], subsample_size=batch_size, device=x.device):
            pass

    def fit(
        self,
        x: Any,
        *,
        steps: int = 2000,
        batch_size: int | None = 128,
        lr: float = 1e-3,
        jit: bool | None = None,
        optim: PyroOptim | None = None,
        **kwargs: Any,
    ) -> History:
        """Minimise N · MSE by Adam through :func:`fit_svi` (see :meth:`VAE.fit`)."""
        x = self._check_x(x, matrix=True)
        return self._fit(
            self.model,
            self.guide,
            (x,),
            steps=steps,
            batch_size=batch_size,
            lr=lr,
            loss="trace",
            jit=jit,
            num_particles=1,
            optim=optim,
            **kwargs,
        )

    @torch.no_grad()
    def encode(self, x: Any) -> torch.Tensor:
        """z = hφ(x); x of shape (..., D)."""
        return self.encoder(self._check_x(x))

    @torch.no_grad()
    def decode(self, z: Any) -> torch.Tensor:
        """x̂ = fθ(z); z of shape (..., L)."""
        out = self.decoder(self._check_z(z))
        return torch.sigmoid(out) if self.sigmoid_output else out

    def reconstruct(self, x: Any) -> torch.Tensor:
        """fθ(hφ(x))."""
        return self.decode(self.encode(x))

    @torch.no_grad()
    def mse(self, x: Any) -> float:
        """The lecture's MSE: mean over rows and features of (x - fθ(hφ(x)))²."""
        x = self._check_x(x, matrix=True)
        return float((self._reconstruct(x) - x).pow(2).mean())
