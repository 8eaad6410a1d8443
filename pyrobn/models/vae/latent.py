"""Latent-space tools of notes 2.2.4: interpolation, attribute vectors, a chart start, and
the spread of the likelihood estimators of eq. 20.

- :func:`lerp` / :func:`slerp`: paths z_t between two codes (2.2.4.2).
- :class:`LatentTools`: ``interpolate`` (2.2.4.2), ``attribute_vector`` (eq. 21) and
  ``shift`` (2.2.4.3) over a model's ``encode``/``decode``.
- :class:`ChartStart`: ``init_from_embedding``, a start of the encoder and decoder from a
  given chart of the data (Isomap, PCA, ...) before ELBO training.
- :func:`estimator_spread`: mean and spread of the plain Monte Carlo estimate of log p(x)
  from the prior (eq. 20) against the importance-weighted one, as the number of samples
  grows: why the ELBO and importance sampling are needed.

**encoder(x): a draw or the mean.** The notes' encoder(x) "genera una muestra desde la
distribución posterior" and decoder(z) a sample of p(x | z). pyrobn's tools take
``sample=False`` by default and use the posterior mean μφ(x) and the decoder's mean
E[x | z]: the centroid of eq. 21 computed from draws, (1/|X|) Σ (μφ(x) + σφ(x) ε), has
expectation (1/|X|) Σ μφ(x), the centroid of the means, which is therefore the same
direction without its Monte Carlo noise (variance Σ σφ²(x) / |X|²); and an interpolation
between means starts and ends at the reconstructions of x0 and x1. ``sample=True`` (with
``seed=``) runs the notes' procedure as written: z ~ qφ(z | x), x ~ pθ(x | z).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pyro
import torch

from pyrobn.errors import ConfigurationError, PyrobnValueError, ShapeError
from pyrobn.models.vae.latent_model import PROPOSALS, GaussianLatentModel
from pyrobn.random import seeded
from pyrobn.validation import (
    check_finite,
    check_int,
    check_positive,
    check_shape,
    to_real_tensor,
)

__all__ = [
    "INTERPOLATIONS",
    "ChartStart",
    "EstimatorSpread",
    "LatentTools",
    "estimator_spread",
    "lerp",
    "slerp",
]


def lerp(z0: torch.Tensor, z1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Linear interpolation z_t = (1 - t) z0 + t z1 (notes 2.2.4.2), shape (T, *z0.shape).

    >>> lerp(torch.zeros(2), torch.ones(2), torch.tensor([0.0, 0.25])).tolist()
    [[0.0, 0.0], [0.25, 0.25]]
    """
    t = t.reshape(-1, *([1] * z0.dim()))
    return (1 - t) * z0 + t * z1


def slerp(z0: torch.Tensor, z1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation (notes 2.2.4.2: "e.g., slerp"), shape (T, *z0.shape).

    z_t = sin((1 - t) Ω) / sin Ω · z0 + sin(t Ω) / sin Ω · z1, with Ω the angle between
    z0 and z1 (per row of a batch). Between vectors of equal norm the path stays on
    their sphere and the angle moves uniformly in t; where Ω is ~0 (or a vector is 0)
    it falls back to :func:`lerp`.

    >>> z = slerp(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]), torch.tensor([0.5]))
    >>> [round(v, 4) for v in z[0].tolist()]
    [0.7071, 0.7071]
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


#: the ``method=`` names of :meth:`LatentTools.interpolate`
INTERPOLATIONS = {"linear": lerp, "slerp": slerp}


class LatentTools:
    """Latent-space tools of notes 2.2.4.2-2.2.4.3 over a model's ``encode`` and ``decode``
    (see the module docstring for ``sample=``: the notes' draws or the means)."""

    latent_dim: int

    def encode(self, x: Any, *, sample: bool = False, seed: int | None = None) -> torch.Tensor:
        raise NotImplementedError  # pragma: no cover - defined by the models

    def decode(self, z: Any, *, sample: bool = False, seed: int | None = None) -> torch.Tensor:
        raise NotImplementedError  # pragma: no cover - defined by the models

    def _check_x(self, x: Any, name: str = "x", *, matrix: bool = False) -> torch.Tensor:
        raise NotImplementedError  # pragma: no cover - defined by the models

    def _check_z(self, z: Any, name: str = "z") -> torch.Tensor:
        raise NotImplementedError  # pragma: no cover - defined by the models

    @torch.no_grad()
    def interpolate(
        self,
        x0: Any,
        x1: Any,
        steps: int = 8,
        method: str = "linear",
        *,
        sample: bool = False,
        seed: int | None = None,
    ) -> torch.Tensor:
        """Decode a path z_t from encoder(x0) to encoder(x1), t = 0 .. 1 (notes 2.2.4.2).

        ``method="linear"``: z_t = t z1 + (1 - t) z0; ``"slerp"``: spherical
        interpolation (:func:`slerp`). x0, x1 of shape (D,) give (steps, D); a batch of
        pairs (B, D) gives (B, steps, D), one interpolation row per pair. ``sample=True``:
        encoder(x) is a draw of qφ(z | x) and each decoded image a draw of pθ(x | z), as
        in the notes (default: the means; module docstring).

        >>> vae = pyrobn.VAE(4, latent_dim=2, hidden=(8,))
        >>> vae.interpolate(torch.zeros(4), torch.ones(4), steps=5).shape
        torch.Size([5, 4])
        """
        check_int(steps, "steps", low=2)
        if not isinstance(method, str) or method not in INTERPOLATIONS:
            raise ConfigurationError(
                f"unknown interpolation {method!r}; choose one of {sorted(INTERPOLATIONS)}"
            )
        x0, x1 = self._check_x(x0, "x0"), self._check_x(x1, "x1")
        if x0.shape != x1.shape:
            raise ShapeError(
                f"x0 and x1 must have one shape, got {tuple(x0.shape)} and {tuple(x1.shape)}"
            )
        with seeded(seed if sample else None):
            z0, z1 = self.encode(torch.stack([x0, x1]), sample=sample)
            t = torch.linspace(0, 1, steps, dtype=z0.dtype, device=z0.device)
            path = INTERPOLATIONS[method](z0, z1, t)  # (steps, ..., L)
            return self.decode(path, sample=sample).movedim(0, -2)

    @torch.no_grad()
    def attribute_vector(
        self, x_pos: Any, x_neg: Any, *, sample: bool = False, seed: int | None = None
    ) -> torch.Tensor:
        """z_attribute = z⁺ - z⁻, the difference of the latent centroids (eq. 21).

        z± = (1/|X±|) Σ_{x ∈ X±} encoder(x), with encoder(x) the posterior mean μφ(x)
        (``sample=True``: a draw of qφ(z | x), the notes' encoder; module docstring).

        >>> vae = pyrobn.VAE(4, latent_dim=2, hidden=(8,))
        >>> vae.attribute_vector(torch.ones(3, 4), torch.zeros(5, 4)).shape
        torch.Size([2])
        """
        x_pos, x_neg = self._check_x(x_pos, "x_pos"), self._check_x(x_neg, "x_neg")
        with seeded(seed if sample else None):
            z_pos = self.encode(x_pos, sample=sample).reshape(-1, self.latent_dim)
            z_neg = self.encode(x_neg, sample=sample).reshape(-1, self.latent_dim)
        if len(z_pos) == 0 or len(z_neg) == 0:
            raise ShapeError("attribute_vector needs at least one sample in x_pos and x_neg")
        return z_pos.mean(0) - z_neg.mean(0)

    @torch.no_grad()
    def shift(
        self,
        x: Any,
        vector: Any,
        lam: float | Sequence[float] | torch.Tensor = 1.0,
        *,
        sample: bool = False,
        seed: int | None = None,
    ) -> torch.Tensor:
        """x_λ = decoder(encoder(x) + λ z_attribute) (notes 2.2.4.3, after eq. 21).

        λ > 0 strengthens the attribute, λ < 0 weakens it. A scalar λ gives the shape of
        x; a sequence of λ gives (len(λ), *x.shape). ``sample=True``: one draw of
        qφ(z | x) per x (shared by every λ) and draws of pθ(x | z).

        >>> vae = pyrobn.VAE(4, latent_dim=2, hidden=(8,))
        >>> vae.shift(torch.zeros(3, 4), torch.ones(2), [-1.0, 1.0]).shape
        torch.Size([2, 3, 4])
        """
        x = self._check_x(x)
        vector = self._check_z(vector, "vector")
        if isinstance(lam, numbers.Real) and not isinstance(lam, bool):
            lam_t = torch.tensor(float(lam), dtype=x.dtype, device=x.device)
        else:
            lam_t = to_real_tensor(lam, "lam", dtype=x.dtype, device=x.device)
        check_finite(lam_t, "lam")
        if lam_t.dim() > 1:
            raise ShapeError(f"lam must be a number or a 1-D sequence, got {tuple(lam_t.shape)}")
        with seeded(seed if sample else None):
            z = self.encode(x, sample=sample)
            shifted = z + lam_t.reshape(*lam_t.shape, *([1] * z.dim())) * vector
            return self.decode(shifted, sample=sample)


class ChartStart(GaussianLatentModel):
    """``init_from_embedding``: start the encoder and decoder from a given chart of x."""

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
    ) -> ChartStart:
        """Start the encoder and decoder from a given chart of x, before ``fit``.

        ``embedding`` (n, latent_dim) holds coordinates of the rows of x from another
        method (Isomap, PCA, ...: the start t-SNE takes from PCA and UMAP from a spectral
        embedding). Each column is standardised, e = (embedding - mean) / std, to the
        scale of the prior N(0, I); then Adam minimises over minibatches

            ||μφ(x_i) - e_i||² + 0.01 ||log σφ²(x_i) - log s²||² - log pθ(x_i | z = e_i),

        with s = ``posterior_scale``: the encoder maps x_i to its chart point with a narrow
        posterior and the decoder inverts the chart. ``fit`` then maximises the ELBO
        from there; keep its learning rate small (the default 1e-3): at 3e-3 the first
        Adam steps broke the swiss-roll chart in 1 of 40 initialisations, at 1e-3 in none
        of 80. Why: the ELBO's gradient from a random start folds a rolled-up manifold
        into a local optimum. On the swiss roll the unrolled chart stays unrolled under
        ELBO training and scores higher than random starts do (held-out ELBO -4.5 to -6.3
        nats per point against -6.0 to -38, higher in each of 40 paired runs; tutorial 09,
        ``examples/swiss_roll_starts.py``). Other keyword arguments go to
        :func:`pyrobn.infer.fit_svi`. Returns the model; ``fit_result_`` records this
        phase (objective ``"chart_fit"``: minus the quantity above, per step).
        """
        x = self._check_x(x, matrix=True)
        chart = to_real_tensor(embedding, "embedding", dtype=self.dtype, device=self.device)
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
            objective_name="chart_fit",
            **kwargs,
        )


@dataclass
class EstimatorSpread:
    """What :func:`estimator_spread` measured, per proposal and number of samples K.

    ``mean[p][i]``: the average over rows of the mean estimate of log p(x) with proposal
    ``p`` and K = ``num_samples[i]`` samples; ``sd[p][i]``: the average over rows of its
    standard deviation over ``repeats`` independent estimates (nats).
    """

    num_samples: list[int]
    repeats: int
    mean: dict[str, list[float]] = field(default_factory=dict)
    sd: dict[str, list[float]] = field(default_factory=dict)


def estimator_spread(
    model: GaussianLatentModel,
    x: Any,
    num_samples: Sequence[int] = (1, 10, 100, 1000),
    *,
    repeats: int = 10,
    seed: int | None = 0,
    proposals: Sequence[str] = PROPOSALS,
) -> EstimatorSpread:
    """Mean and spread of two estimates of log pθ(x) as the number of samples K grows.

    - ``"prior"``: the plain Monte Carlo estimate of eq. 20,
      log p̂(x) = log (1/K) Σ_k pθ(x | z_k), z_k ~ p(z);
    - ``"posterior"``: importance sampling with the encoder as proposal,
      log p̂(x) = log (1/K) Σ_k pθ(x | z_k) p(z_k) / qφ(z_k | x), z_k ~ qφ(z | x).

    Both are unbiased for pθ(x) itself; their logs are biased low by about half their
    relative variance, so a proposal that rarely lands where pθ(x | z) is large gives an
    estimate far below log pθ(x) with a large spread: the prior, in all but the smallest
    problems. ``x`` is (n, D) (for a :class:`pyrobn.ConditionalVAE`, use its own
    ``log_likelihood``). Each estimate is repeated ``repeats`` times.

    >>> vae = pyrobn.VAE(4, latent_dim=2, hidden=(8,), likelihood="normal", obs_scale=1.0)
    >>> spread = estimator_spread(vae, torch.zeros(3, 4), [1, 100], repeats=4)
    >>> spread.num_samples, sorted(spread.sd)
    ([1, 100], ['posterior', 'prior'])
    """
    sizes = [check_int(k, "num_samples") for k in num_samples]
    if not sizes:
        raise ConfigurationError("num_samples must name at least one number of samples")
    repeats = check_int(repeats, "repeats", low=2)
    for p in proposals:
        if not isinstance(p, str) or p not in PROPOSALS:
            raise ConfigurationError(f"unknown proposal {p!r}; choose from {list(PROPOSALS)}")
    x = model._check_x(x, matrix=True)
    result = EstimatorSpread(sizes, repeats)
    stacked = x.repeat(repeats, 1)
    with seeded(seed):
        for p in proposals:
            means, sds = [], []
            for k in sizes:
                est = model._evaluate(stacked, None, k, None, "logsumexp", p)
                est = est.reshape(repeats, x.shape[0])
                means.append(float(est.mean(0).mean()))
                sds.append(float(est.std(0).mean()))
            result.mean[p], result.sd[p] = means, sds
    return result
