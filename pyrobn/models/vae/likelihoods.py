"""The observation families pθ(x | z) of the decoder (lecture: Normal, Bernoulli, categorical).

The lecture ("Término de la divergencia de KL e hipótesis") lets the decoder's distribution
follow the data: Normal (the reconstruction term is the MSE), Bernoulli (the binary
cross-entropy), categorical (the cross-entropy). The decoder fθ(z) outputs, per feature,

- ``"bernoulli"``: one logit; log p is minus the binary cross-entropy. A normalised
  log-likelihood for x in {0, 1}; for grey values in [0, 1] the usual BCE objective.
- ``"continuous_bernoulli"``: one logit of the continuous Bernoulli, a normalised density
  on [0, 1] (Loaiza-Ganem & Cunningham 2019).
- ``"normal"``: the mean, with a per-feature scale σ learned or fixed (``scale``):
  -log N(x | m, σ²) = (x - m)² / (2σ²) + log σ + ½ log 2π.
- ``"categorical"``: ``levels`` logits; x holds integer levels {0, ..., L - 1} (the
  digits' 17 grey levels), log p(x | z) = Σ_d log softmax(fθ(z)_d)[x_d], so the ELBO and
  the likelihood are in nats per image of a normalised discrete distribution.

Every family is a :mod:`torch.distributions` object wrapped in ``Independent(·, 1)``:
the log-densities are torch's, not hand-written copies.
"""

from __future__ import annotations

import math
from typing import Any

import pyro.distributions as dist
import torch
from pyro.nn import PyroModule
from torch import nn

from pyrobn.errors import ConfigurationError, OutOfSupportError
from pyrobn.validation import check_int, check_integers_in_range, check_positive

__all__ = ["LIKELIHOODS", "UNIT_INTERVAL", "Likelihood", "check_likelihood"]

#: the observation families of pθ(x | z), by name
LIKELIHOODS = ("bernoulli", "continuous_bernoulli", "normal", "categorical")
#: the families whose support is [0, 1]
UNIT_INTERVAL = ("bernoulli", "continuous_bernoulli")


def check_likelihood(
    likelihood: Any, obs_scale: float | None, levels: int | None
) -> tuple[str, float | None, int | None]:
    """Validate the constructor's likelihood arguments; returns them cleaned.

    ``obs_scale`` belongs to ``"normal"`` only, ``levels`` (an integer >= 2) to
    ``"categorical"`` only, where it is required.

    >>> check_likelihood("categorical", None, 17)
    ('categorical', None, 17)
    """
    if not isinstance(likelihood, str) or likelihood not in LIKELIHOODS:
        raise ConfigurationError(
            f"unknown likelihood {likelihood!r}; choose one of {list(LIKELIHOODS)}"
        )
    if obs_scale is not None:
        if likelihood != "normal":
            raise ConfigurationError(
                f"obs_scale is the σ of the 'normal' likelihood; {likelihood!r} has none"
            )
        check_positive(obs_scale, "obs_scale")
        obs_scale = float(obs_scale)
    if likelihood == "categorical":
        if levels is None:
            raise ConfigurationError(
                "the 'categorical' likelihood needs levels=L, the number of values a feature "
                "takes (x in {0, ..., L - 1}; 17 for the digits' grey levels)"
            )
        levels = check_int(levels, "levels", low=2)
    elif levels is not None:
        raise ConfigurationError(
            f"levels is the number of categories of the 'categorical' likelihood; "
            f"{likelihood!r} has none"
        )
    return likelihood, obs_scale, levels


class Likelihood(PyroModule):
    """pθ(x | z) from the decoder's output ``out`` of shape (..., D · outputs_per_feature).

    >>> lik = Likelihood("categorical", 3, levels=4)
    >>> lik.outputs_per_feature
    4
    >>> lik(torch.zeros(2, 12)).log_prob(torch.tensor([[0.0, 1, 3], [2, 2, 2]])).tolist()
    [-4.158883094787598, -4.158883094787598]
    """

    def __init__(
        self, kind: str, data_dim: int, scale: float | None = None, levels: int | None = None
    ) -> None:
        super().__init__()
        self.kind, _, self.levels = check_likelihood(kind, scale, levels)
        self.data_dim = data_dim
        if kind == "normal":
            if scale is None:
                self.log_scale = nn.Parameter(torch.zeros(data_dim))
            else:
                self.register_buffer("log_scale", torch.full((data_dim,), math.log(scale)))

    @property
    def outputs_per_feature(self) -> int:
        """How many decoder outputs parametrise one feature (L logits, else 1)."""
        return self.levels if self.kind == "categorical" else 1

    # ------------------------------------------------------------------ the data
    def check(self, x: torch.Tensor, name: str) -> torch.Tensor:
        """Raise :class:`OutOfSupportError` naming the first value of x outside the support."""
        if self.kind in UNIT_INTERVAL:
            bad = (x < 0) | (x > 1)
            if bool(bad.any()):
                index = tuple(int(i) for i in bad.nonzero()[0].tolist())
                raise OutOfSupportError(
                    f"{name}{list(index)} = {x[index].item():.6g} lies outside [0, 1], the "
                    f"support of the {self.kind!r} likelihood (scale the data to [0, 1], or "
                    "use likelihood='normal')"
                )
        elif self.kind == "categorical":
            assert self.levels is not None
            check_integers_in_range(x, 0, self.levels, f"{name} (levels of the categorical)")
        return x

    def encoder_input(self, x: torch.Tensor) -> torch.Tensor:
        """What the encoder reads: x itself, or the levels scaled to [0, 1] (x / (L - 1))."""
        if self.kind == "categorical":
            assert self.levels is not None
            return x / (self.levels - 1)
        return x

    # ------------------------------------------------------------------ the distribution
    def forward(self, out: torch.Tensor) -> dist.TorchDistribution:
        """The distribution of x given the decoder output (event shape (D,))."""
        if self.kind == "bernoulli":
            # validate_args=False: values in [0, 1] are allowed (binary cross-entropy)
            base = dist.Bernoulli(logits=out, validate_args=False)
        elif self.kind == "continuous_bernoulli":
            base = dist.ContinuousBernoulli(logits=out, validate_args=False)
        elif self.kind == "categorical":
            assert self.levels is not None
            logits = out.reshape(*out.shape[:-1], self.data_dim, self.levels)
            base = dist.Categorical(logits=logits, validate_args=False)
        else:
            base = dist.Normal(out, self.log_scale.exp(), validate_args=False)
        return dist.Independent(base, 1, validate_args=False)

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        """E[x | z] from the decoder output (for the categorical, Σ_k k p_k: a mean level)."""
        if self.kind == "bernoulli":
            return torch.sigmoid(out)
        if self.kind == "continuous_bernoulli":
            return torch.distributions.ContinuousBernoulli(logits=out, validate_args=False).mean
        if self.kind == "categorical":
            assert self.levels is not None
            probs = out.reshape(*out.shape[:-1], self.data_dim, self.levels).softmax(-1)
            return probs @ torch.arange(self.levels, dtype=out.dtype, device=out.device)
        return out

    def sample(self, out: torch.Tensor) -> torch.Tensor:
        """A draw x ~ pθ(x | z): floats, or integer levels (dtype long) for the categorical."""
        return self(out).sample()
