"""The one-variable conditionals p(x_t | x_<t) of an autoregressive model (notes eq. 15).

A network gives, for every position t, a parameter vector θ_t (a function of x_<t only);
a :class:`Conditional` turns θ_t into a distribution over x_t: its log-probability, a
draw at a temperature, and the features the network reads for x_t.

Discrete (exact probabilities over ``levels`` values):

* ``categorical``: p(x_t = v) = softmax(θ_t)_v, one logit per level;
* ``discretized_logistic``: a mixture of K logistics cut into unit bins on the levels
  (PixelCNN++): p(v) = Σ_k π_k [σ((v + ½ - μ_k)/s_k) - σ((v - ½ - μ_k)/s_k)], the end
  bins stretched to ±∞ so that the L probabilities sum to 1; 3K parameters instead of L,
  and neighbouring grey levels share strength;
* ``bernoulli``: p(x_t = 1) = σ(θ_t).

Continuous (densities, on standardised values):

* ``normal``: N(μ_t, σ_t²);
* ``logistic_mixture``: Σ_k π_k Logistic(μ_k, s_k).

Temperature (notes 2.2.2: the chapter's link between ARMs and thermodynamics): a draw at
temperature T comes from p_T(x_t | x_<t) ∝ p(x_t | x_<t)^(1/T). That is exact for the
discrete conditionals (logits / T over all levels) and for the normal (σ² T); for the
continuous logistic mixture it is approximated by π ∝ π^(1/T) and s → s T.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from pyrobn.errors import ConfigurationError
from pyrobn.validation import check_finite, check_int, check_integers_in_range

DISCRETE = ("categorical", "discretized_logistic", "bernoulli")
CONTINUOUS = ("normal", "logistic_mixture")
LIKELIHOODS = DISCRETE + CONTINUOUS
_MIN_LOG_SCALE = -7.0


def _log_bin_mass(centred: torch.Tensor, inv_scale: torch.Tensor) -> torch.Tensor:
    """log(σ((c + ½)/s) - σ((c - ½)/s)) without cancellation in either tail.

    Uses σ(b) - σ(a) = σ(-a) - σ(-b) to work on the side where both are small, and
    log(e^p - e^m) = p + log(1 - e^(m - p)); where the bin is too wide for that (both
    arguments equal in floating point) it falls back on the density at the centre.
    """
    plus = (centred + 0.5) * inv_scale
    minus = (centred - 0.5) * inv_scale
    flip = centred > 0
    upper = torch.where(flip, -minus, plus)
    lower = torch.where(flip, -plus, minus)
    log_up, log_low = F.logsigmoid(upper), F.logsigmoid(lower)
    gap = (log_low - log_up).clamp(max=-1e-12)
    exact = log_up + torch.log(-torch.expm1(gap))
    mid = centred * inv_scale
    density = mid - 2 * F.softplus(mid) + torch.log(inv_scale)
    return torch.where(upper - lower > 1e-5, exact, density)


class Conditional:
    """Base class: parameters per position -> distribution of that position's variable."""

    name: str = ""
    discrete: bool = True
    n_params: int = 1
    in_features: int = 1

    def __init__(self, levels: int = 2, components: int = 1) -> None:
        self.levels = levels
        self.components = components

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The network's features of x, shape (..., T, in_features)."""
        raise NotImplementedError

    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """log p(x_t | θ_t) per position: params (..., T, P), x (..., T) -> (..., T)."""
        raise NotImplementedError

    def sample(
        self, params: torch.Tensor, temperature: float, generator: torch.Generator | None
    ) -> torch.Tensor:
        """One draw per row from p(. | θ)^(1/T): params (B, P) -> (B,)."""
        raise NotImplementedError

    def check(self, x: torch.Tensor, name: str) -> torch.Tensor:
        """Raise a :mod:`pyrobn.errors` error unless every entry is in the support."""
        raise NotImplementedError


class _Discrete(Conditional):
    discrete = True

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        # the grey level as one ordinal feature in [-1, 1]
        return (2.0 * x / (self.levels - 1) - 1.0).unsqueeze(-1)

    def level_log_probs(self, params: torch.Tensor) -> torch.Tensor:
        """log p(x_t = v | θ_t) for every level v: (..., P) -> (..., L)."""
        raise NotImplementedError

    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.level_log_probs(params).gather(-1, x.long().unsqueeze(-1)).squeeze(-1)

    def sample(
        self, params: torch.Tensor, temperature: float, generator: torch.Generator | None
    ) -> torch.Tensor:
        return self.sample_logits(self.level_log_probs(params), temperature, generator)

    def sample_logits(
        self, logits: torch.Tensor, temperature: float, generator: torch.Generator | None
    ) -> torch.Tensor:
        """One draw per row from softmax(logits / T) over the levels: (B, L) -> (B,)."""
        probs = torch.softmax((logits / temperature).float(), -1)
        return torch.multinomial(probs, 1, generator=generator).squeeze(-1).to(logits.dtype)

    def check(self, x: torch.Tensor, name: str) -> torch.Tensor:
        return check_integers_in_range(x, 0, self.levels, name)


class Categorical(_Discrete):
    """p(x_t = v | x_<t) = softmax(θ_t)_v over ``levels`` values; ``one_hot`` inputs for
    nominal symbols (characters), the ordinal grey level otherwise."""

    name = "categorical"

    def __init__(self, levels: int, components: int = 1, *, one_hot: bool = False) -> None:
        super().__init__(levels, components)
        self.n_params = levels
        self.one_hot = one_hot
        self.in_features = levels if one_hot else 1

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        if self.one_hot:
            return F.one_hot(x.long(), self.levels).to(
                x.dtype if x.is_floating_point() else torch.float32
            )
        return super().encode(x)

    def level_log_probs(self, params: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(params, -1)

    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        # cross-entropy kernel: the same arithmetic as the plain-PyTorch reference
        flat = params.reshape(-1, params.shape[-1])
        return -F.cross_entropy(flat, x.long().reshape(-1), reduction="none").reshape(x.shape)


class DiscretizedLogistic(_Discrete):
    """A mixture of K logistics binned on the levels 0..L-1 (PixelCNN++), 3K parameters."""

    name = "discretized_logistic"

    def __init__(self, levels: int, components: int = 4) -> None:
        super().__init__(levels, components)
        self.n_params = 3 * components

    def _split(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logit_pi, raw_mu, raw_log_s = params.split(self.components, -1)
        half = (self.levels - 1) / 2
        mu = half + half * raw_mu  # raw 0 is the middle grey level
        log_s = (raw_log_s + math.log(half / 2)).clamp(min=_MIN_LOG_SCALE)
        return torch.log_softmax(logit_pi, -1), mu, log_s

    def _component_log_probs(
        self, params: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(log π_k, log P_k(v)) broadcast over v's trailing axis."""
        log_pi, mu, log_s = self._split(params)
        centred = v - mu
        inv = torch.exp(-log_s)
        inner = _log_bin_mass(centred, inv)
        lowest = F.logsigmoid((centred + 0.5) * inv)  # P(x <= v + ½): the first bin
        highest = F.logsigmoid(-(centred - 0.5) * inv)  # P(x > v - ½): the last bin
        log_p = torch.where(v < 0.5, lowest, torch.where(v > self.levels - 1.5, highest, inner))
        return log_pi, log_p

    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        log_pi, log_p = self._component_log_probs(params, x.to(params.dtype).unsqueeze(-1))
        return torch.logsumexp(log_pi + log_p, -1)

    def level_log_probs(self, params: torch.Tensor) -> torch.Tensor:
        v = torch.arange(self.levels, dtype=params.dtype, device=params.device)
        log_pi, log_p = self._component_log_probs(params.unsqueeze(-2), v.unsqueeze(-1))
        return torch.logsumexp(log_pi + log_p, -1)


class Bernoulli(_Discrete):
    """p(x_t = 1 | x_<t) = σ(θ_t)."""

    name = "bernoulli"

    def __init__(self, levels: int = 2, components: int = 1) -> None:
        super().__init__(2, components)
        self.n_params = 1

    def level_log_probs(self, params: torch.Tensor) -> torch.Tensor:
        return torch.cat([F.logsigmoid(-params), F.logsigmoid(params)], -1)

    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        logit = params.squeeze(-1)
        return -F.binary_cross_entropy_with_logits(logit, x.to(logit.dtype), reduction="none")


class _Continuous(Conditional):
    discrete = False

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return x.unsqueeze(-1)

    def check(self, x: torch.Tensor, name: str) -> torch.Tensor:
        return check_finite(x, name)


class Normal(_Continuous):
    """N(x_t | μ_t, σ_t²) with θ_t = (μ_t, log σ_t)."""

    name = "normal"

    def __init__(self, levels: int = 0, components: int = 1) -> None:
        super().__init__(levels, components)
        self.n_params = 2

    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        loc, log_s = params.unbind(-1)
        log_s = log_s.clamp(min=_MIN_LOG_SCALE)
        return torch.distributions.Normal(loc, torch.exp(log_s), validate_args=False).log_prob(x)

    def sample(
        self, params: torch.Tensor, temperature: float, generator: torch.Generator | None
    ) -> torch.Tensor:
        loc, log_s = params.unbind(-1)
        scale = torch.exp(log_s.clamp(min=_MIN_LOG_SCALE)) * math.sqrt(temperature)
        eps = torch.randn(loc.shape, generator=generator, dtype=loc.dtype, device=loc.device)
        return loc + scale * eps


class LogisticMixture(_Continuous):
    """Σ_k π_k Logistic(x_t | μ_k, s_k), θ_t = (logits π, μ, log s)."""

    name = "logistic_mixture"

    def __init__(self, levels: int = 0, components: int = 4) -> None:
        super().__init__(levels, components)
        self.n_params = 3 * components

    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        logit_pi, mu, log_s = params.split(self.components, -1)
        log_s = log_s.clamp(min=_MIN_LOG_SCALE)
        z = (x.unsqueeze(-1) - mu) * torch.exp(-log_s)
        log_pdf = z - 2 * F.softplus(z) - log_s
        return torch.logsumexp(torch.log_softmax(logit_pi, -1) + log_pdf, -1)

    def sample(
        self, params: torch.Tensor, temperature: float, generator: torch.Generator | None
    ) -> torch.Tensor:
        logit_pi, mu, log_s = params.split(self.components, -1)
        probs = torch.softmax((logit_pi / temperature).float(), -1)
        k = torch.multinomial(probs, 1, generator=generator)
        mu_k = mu.gather(-1, k).squeeze(-1)
        s_k = torch.exp(log_s.clamp(min=_MIN_LOG_SCALE).gather(-1, k).squeeze(-1)) * temperature
        u = torch.rand(mu_k.shape, generator=generator, dtype=mu.dtype, device=mu.device)
        u = u.clamp(1e-6, 1 - 1e-6)
        return mu_k + s_k * (torch.log(u) - torch.log1p(-u))


_KINDS: dict[str, type[Conditional]] = {
    "categorical": Categorical,
    "discretized_logistic": DiscretizedLogistic,
    "bernoulli": Bernoulli,
    "normal": Normal,
    "logistic_mixture": LogisticMixture,
}


def make_conditional(
    likelihood: str, levels: int | None, components: int, *, one_hot: bool = False
) -> Conditional:
    """The :class:`Conditional` named ``likelihood`` (checked), for ``levels`` values."""
    if likelihood not in _KINDS:
        raise ConfigurationError(
            f"unknown likelihood {likelihood!r}; choose one of {list(LIKELIHOODS)}"
        )
    check_int(components, "components")
    if likelihood in ("categorical", "discretized_logistic"):
        if levels is None:
            raise ConfigurationError(
                f"likelihood {likelihood!r} needs levels= (the number of values)"
            )
        levels = check_int(levels, "levels", low=2)
    elif likelihood == "bernoulli":
        if levels not in (None, 2):
            raise ConfigurationError(f"a Bernoulli variable has 2 levels, got levels={levels}")
        levels = 2
    else:
        if levels is not None:
            raise ConfigurationError(f"levels= applies to discrete likelihoods, not {likelihood!r}")
        levels = 0
    if one_hot and likelihood != "categorical":
        raise ConfigurationError("one_hot inputs apply to the 'categorical' likelihood only")
    if likelihood == "categorical":
        return Categorical(levels, components, one_hot=one_hot)
    return _KINDS[likelihood](levels, components)


__all__ = [
    "CONTINUOUS",
    "DISCRETE",
    "LIKELIHOODS",
    "Bernoulli",
    "Categorical",
    "Conditional",
    "DiscretizedLogistic",
    "LogisticMixture",
    "Normal",
    "make_conditional",
]
