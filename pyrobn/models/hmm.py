"""Hidden Markov models (notes 2.1.3.4, eq. 12, Figura 5): a Bayesian network over sequences.

    p(z, x) = p(z_1) prod_{t=1}^{T-1} p(z_{t+1} | z_t) prod_{t=1}^{T} p(x_t | z_t)     (12)

A latent Markov chain z_1 -> z_2 -> ... emits one observation x_t per step (Figura 5).
:class:`HiddenMarkovModel` is a Pyro model/guide pair (states enumerated under
``pyro.markov``; Dirichlet priors on the probability tables) with exact queries on fast
chunked kernels (:mod:`pyrobn.infer.hmm_ops`): ``log_prob`` (forward algorithm),
``posterior_marginals`` (forward-backward), ``viterbi`` (max-product) and ``sample``.
``fit`` learns from labelled states (counts), unlabelled or partly labelled sequences
(Baum-Welch EM with Dirichlet MAP, or SVI with ``TraceEnum_ELBO`` and ``AutoDelta``), and sums
out missing observations (NaN).

Data: a batch of sequences is a tensor (N, T) (categorical symbols; float with NaN for a
missing symbol) or (N, T, D) / (N, T) when D = 1 (Gaussian), or a list of 1-D / 2-D
sequences of different lengths; ``lengths=`` (N,) or a prefix ``mask=`` (N, T) marks the
real steps of padded batches. A single sequence (T,) (or (T, D)) gives unbatched results.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.infer import TraceEnum_ELBO, infer_discrete
from pyro.infer.autoguide import AutoDelta, init_to_value

from pyrobn.errors import (
    ConfigurationError,
    ShapeError,
    ZeroProbabilityEvidence,
)
from pyrobn.infer import hmm_ops
from pyrobn.infer.svi import fit_svi
from pyrobn.models.base import PyrobnModule
from pyrobn.validation import (
    check_distribution,
    check_finite,
    check_int,
    check_integers_in_range,
    check_positive,
    check_shape,
)

_EMISSIONS = ("categorical", "gaussian")
_GLOBALS = ("init_probs", "trans_probs", "emission_probs", "means", "variances")


@dataclass
class Batch:
    """Observations prepared for the kernels (all on the model's device)."""

    values: torch.Tensor  # (N, T) long symbols, or (N, T, D) floats; 0 where missing/padded
    observed: torch.Tensor | None  # (N, T) / (N, T, D) bool; None: every step observed
    mask: torch.Tensor | None  # (N, T) real steps, None when no padding
    single: bool  # the user gave one unbatched sequence
    labels: torch.Tensor | None = None  # (N, T) long states, -1 unknown (and on padding)

    def observed_mask(self) -> torch.Tensor:
        """``observed`` as a tensor (all True when it is None)."""
        if self.observed is not None:
            return self.observed
        return torch.ones(self.values.shape, dtype=torch.bool, device=self.values.device)

    @property
    def shape(self) -> tuple[int, int]:
        return self.values.shape[0], self.values.shape[1]


class HiddenMarkovModel(PyrobnModule):
    """An HMM with K hidden states and categorical or diagonal-Gaussian emissions (eq. 12).

    Args:
        n_states: K, the number of hidden states.
        emission: ``"categorical"`` (needs ``n_symbols``) or ``"gaussian"`` (``n_features``
            dimensions, diagonal covariance).
        n_symbols: V, the vocabulary size of categorical emissions.
        n_features: D, the dimension of Gaussian emissions.
        concentration: the Dirichlet prior's alpha on every probability row (1 = flat, so
            MAP = MLE; alpha > 1 smooths counts by alpha - 1).
        min_variance: the floor of Gaussian variances in ``fit``.
        seed: seed of the random initial parameters.
        init_probs, trans_probs, emission_probs, means, variances: parameters to start from
            (validated: rows must be distributions, variances positive).

    Example:
        >>> hmm = HiddenMarkovModel(2, "categorical", n_symbols=3, trans_probs=[[.9, .1], [.2, .8]])
        >>> hmm.log_prob(torch.tensor([0, 2, 1]))            # log p(x), forward algorithm
        >>> path, best = hmm.viterbi(torch.tensor([0, 2, 1]))  # argmax_z p(z, x)
    """

    max_plate_nesting = 1

    def __init__(
        self,
        n_states: int,
        emission: str = "categorical",
        n_symbols: int | None = None,
        n_features: int = 1,
        *,
        concentration: float = 1.0,
        min_variance: float = 1e-6,
        seed: int = 0,
        init_probs: Any = None,
        trans_probs: Any = None,
        emission_probs: Any = None,
        means: Any = None,
        variances: Any = None,
    ) -> None:
        check_int(n_states, "n_states")
        if emission not in _EMISSIONS:
            raise ConfigurationError(f"emission must be one of {_EMISSIONS}, got {emission!r}")
        if emission == "categorical":
            check_int(n_symbols, "n_symbols (categorical emissions)")
        check_int(n_features, "n_features")
        check_positive(concentration, "concentration")
        check_positive(min_variance, "min_variance")
        super().__init__(
            n_states=n_states,
            emission=emission,
            n_symbols=n_symbols,
            n_features=n_features,
            concentration=concentration,
            min_variance=min_variance,
            seed=seed,
        )
        self.n_states = n_states
        self.emission = emission
        self.n_symbols = n_symbols
        self.n_features = n_features
        self.concentration = float(concentration)
        self.min_variance = float(min_variance)
        k = n_states
        g = torch.Generator().manual_seed(int(seed))
        dtype = torch.float64

        def dirichlet(*shape: int) -> torch.Tensor:
            draws = -torch.rand(*shape, generator=g, dtype=dtype).log()
            return draws / draws.sum(-1, keepdim=True)

        self.register_buffer("init_probs", dirichlet(k))
        self.register_buffer("trans_probs", dirichlet(k, k))
        if emission == "categorical":
            self.register_buffer("emission_probs", dirichlet(k, n_symbols))
        else:
            self.register_buffer("means", torch.randn(k, n_features, generator=g, dtype=dtype))
            self.register_buffer("variances", torch.ones(k, n_features, dtype=dtype))
        self.set_params(
            init_probs=init_probs,
            trans_probs=trans_probs,
            emission_probs=emission_probs,
            means=means,
            variances=variances,
        )
        self.history_: list[float] = []
        self.__dict__["_autoguide"] = None

    # ------------------------------------------------------------------ parameters
    def set_params(self, **params: Any) -> HiddenMarkovModel:
        """Replace some parameters (validated); ``None`` values are left as they are."""
        k = self.n_states
        expected = {
            "init_probs": (k,),
            "trans_probs": (k, k),
            "emission_probs": (k, self.n_symbols),
            "means": (k, self.n_features),
            "variances": (k, self.n_features),
        }
        for name, value in params.items():
            if value is None:
                continue
            if name not in expected:
                raise ConfigurationError(f"unknown HMM parameter {name!r}")
            if (name == "emission_probs") != (self.emission == "categorical") and name in (
                "emission_probs",
                "means",
                "variances",
            ):
                raise ConfigurationError(f"{name} does not apply to {self.emission} emissions")
            tensor = torch.as_tensor(value, dtype=torch.float64).to(self.init_probs.device)
            check_shape(tensor, expected[name], name)
            if name.endswith("probs"):
                check_distribution(tensor, name)
            else:
                check_finite(tensor, name)
                if name == "variances":
                    check_positive(tensor, name)
            getattr(self, name).copy_(tensor)
        return self

    @property
    def params(self) -> dict[str, torch.Tensor]:
        """The current parameter tables (clones)."""
        names = ["init_probs", "trans_probs"]
        names += ["emission_probs"] if self.emission == "categorical" else ["means", "variances"]
        return {name: getattr(self, name).clone() for name in names}

    @property
    def dtype(self) -> torch.dtype:
        return self.init_probs.dtype

    # ------------------------------------------------------------------ data preparation
    def _as_batch(
        self,
        observations: Any,
        lengths: Any = None,
        mask: Any = None,
        states: Any = None,
    ) -> Batch:
        """Validate and pad the observations; raise pyrobn errors naming the fault."""
        device = self.init_probs.device
        categorical = self.emission == "categorical"
        per_step = 1 if categorical else 2  # dims of one sequence
        single = False
        if (
            isinstance(observations, (list, tuple))
            and observations
            and not isinstance(observations[0], (int, float))
        ):
            seqs = [torch.as_tensor(s) for s in observations]
            if lengths is not None or mask is not None:
                raise ConfigurationError("a list of sequences carries its own lengths")
            for i, s in enumerate(seqs):
                if not categorical and s.dim() == 1 and self.n_features == 1:
                    seqs[i] = s = s[:, None]
                if s.dim() != per_step or s.shape[0] == 0:
                    raise ShapeError(
                        f"sequence {i} must be a non-empty {per_step}-D tensor, "
                        f"got shape {tuple(s.shape)}"
                    )
            lengths = [s.shape[0] for s in seqs]
            dtype = torch.float64 if any(s.is_floating_point() for s in seqs) else torch.long
            if not categorical:
                dtype = torch.float64
            x = torch.nn.utils.rnn.pad_sequence([s.to(dtype) for s in seqs], batch_first=True)
        else:
            x = torch.as_tensor(observations)
            if not categorical and self.n_features == 1 and x.dim() in (1, 2):
                x = x[..., None]
            if x.dim() == per_step:
                single = True
                x = x[None]
            if x.dim() != per_step + 1:
                shape = "(N, T)" if categorical else f"(N, T, {self.n_features})"
                raise ShapeError(
                    f"observations must have shape {shape} or one sequence, got "
                    f"{tuple(torch.as_tensor(observations).shape)}"
                )
        x = x.to(device)
        if not categorical:
            check_shape(x, (None, None, self.n_features), "observations")
            x = x.to(self.dtype)
        n, length = x.shape[:2]
        if length == 0:
            raise ShapeError("observations have no time steps")
        real = self._mask(lengths, mask, n, length, device)
        if categorical and real is None and not x.is_floating_point():
            # fast path (every step real and observed): a range check by two reductions
            low, high = int(x.min()), int(x.max())
            if low < 0 or high >= self.n_symbols:
                check_integers_in_range(x, 0, self.n_symbols, "observations (symbols)")
            values, observed = x.long(), None
        else:
            real_steps = real if real is not None else torch.ones(n, length, dtype=torch.bool)
            real_steps = real_steps.to(device)
            if categorical:
                observed = real_steps
                if x.is_floating_point():
                    observed = ~x.isnan() & real_steps
                    check_finite(torch.where(observed, x, torch.zeros_like(x)), "observations")
                filled = torch.where(observed, x, torch.zeros_like(x))
                check_integers_in_range(filled, 0, self.n_symbols, "observations (symbols)")
                values = filled.long()
            else:
                observed = ~x.isnan() & real_steps[..., None]
                filled = torch.where(observed, x, torch.zeros_like(x))
                check_finite(filled, "observations")
                values = filled
        labels = None
        if states is not None:
            real_steps = real if real is not None else torch.ones(n, length, dtype=torch.bool)
            labels = self._labels(states, n, length, single, real_steps.to(device))
        return Batch(values, observed, real, single, labels)

    @staticmethod
    def _mask(lengths: Any, mask: Any, n: int, length: int, device: torch.device):
        if lengths is not None and mask is not None:
            raise ConfigurationError("give lengths= or mask=, not both")
        if lengths is not None:
            lengths = torch.as_tensor(lengths)
            if lengths.dim() == 0:
                lengths = lengths[None]
            check_shape(lengths, (n,), "lengths")
            check_integers_in_range(lengths, 1, length + 1, f"lengths (1..T = {length})")
            real = torch.arange(length)[None, :] < lengths.long().cpu()[:, None]
        elif mask is not None:
            real = torch.as_tensor(mask)
            if real.dim() == 1:
                real = real[None]
            check_shape(real, (n, length), "mask")
            real = real.bool().cpu()
            if not real[:, 0].all():
                row = int((~real[:, 0]).nonzero()[0])
                raise ShapeError(f"mask row {row} has no real first step")
            if (real[:, 1:] & ~real[:, :-1]).any():
                row = int((real[:, 1:] & ~real[:, :-1]).any(1).nonzero()[0])
                raise ShapeError(f"mask row {row} is not a prefix (True steps, then padding)")
        else:
            return None
        return None if bool(real.all()) else real.to(device)

    def _labels(self, states: Any, n: int, length: int, single: bool, real: torch.Tensor):
        if isinstance(states, (list, tuple)) and states and not isinstance(states[0], int):
            seqs = [torch.as_tensor(s).long() for s in states]
            labels = torch.nn.utils.rnn.pad_sequence(seqs, batch_first=True, padding_value=-1)
        else:
            labels = torch.as_tensor(states)
            if single and labels.dim() == 1:
                labels = labels[None]
        check_shape(labels, (n, length), "states")
        labels = labels.to(real.device)
        if labels.is_floating_point():
            labels = torch.where(labels.isnan(), torch.full_like(labels, -1), labels)
        labels = torch.where(real, labels, torch.full_like(labels, -1))
        check_integers_in_range(labels, 0, self.n_states, "states", allow=-1)
        return labels.long()

    # ------------------------------------------------------------------ emission factors
    def _log_emission(self, batch: Batch) -> torch.Tensor:
        """log p(x_t | z_t = k) as (N, T, K); 0 on missing and padded steps."""
        if self.emission == "categorical":
            log_b = _lookup(self.emission_probs.log().T, batch.values)
            if batch.observed is None:
                return log_b
            return torch.where(batch.observed[..., None], log_b, torch.zeros_like(log_b))
        x = batch.values[:, :, None, :]  # (N, T, 1, D)
        var = self.variances
        per_dim = -0.5 * ((x - self.means) ** 2 / var + torch.log(2 * math.pi * var))
        per_dim = torch.where(batch.observed[:, :, None, :], per_dim, torch.zeros_like(per_dim))
        return per_dim.sum(-1)

    def _factors(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Emission factors b (N, T, K) for the sum-product kernels and their log offsets."""
        if self.emission == "categorical":
            b = _lookup(self.emission_probs.T, batch.values)
            if batch.observed is not None:
                b = torch.where(batch.observed[..., None], b, torch.ones_like(b))
            offset = None
        else:
            log_b = self._log_emission(batch)
            offset = log_b.amax(-1)
            b = torch.exp(log_b - offset[..., None])
        if batch.labels is not None:
            b = b * self._label_factor(batch.labels, b.dtype)
        return b, offset

    def _label_factor(self, labels: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """1[z_t = label_t] where the label is known, 1 elsewhere: (N, T, K)."""
        states = torch.arange(self.n_states, device=labels.device)
        return ((labels[..., None] == states) | (labels[..., None] < 0)).to(dtype)

    def _unbatch(self, value: torch.Tensor, batch: Batch) -> torch.Tensor:
        return value[0] if batch.single else value

    # ------------------------------------------------------------------ exact queries
    def log_prob(self, observations: Any, lengths: Any = None, mask: Any = None) -> torch.Tensor:
        """log p(x) = log sum_z p(z, x) (eq. 12) per sequence, by the forward algorithm.

        Missing observations (NaN) are summed out. Returns (N,) (a scalar for one sequence).
        """
        with hmm_ops.kernel_threads(self.init_probs.device):
            batch = self._as_batch(observations, lengths, mask)
            b, offset = self._factors(batch)
            result = hmm_ops.forward_log_prob(
                b, self.init_probs, self.trans_probs, batch.mask, offset
            )
        return self._unbatch(result, batch)

    def posterior_marginals(
        self, observations: Any, lengths: Any = None, mask: Any = None
    ) -> torch.Tensor:
        """p(z_t = k | x) by forward-backward: (N, T, K) (0 on padding), or (T, K)."""
        with hmm_ops.kernel_threads(self.init_probs.device):
            batch = self._as_batch(observations, lengths, mask)
            b, offset = self._factors(batch)
            gamma, log_prob, _ = hmm_ops.forward_backward(
                b, self.init_probs, self.trans_probs, batch.mask, offset
            )
        self._check_possible(log_prob)
        return self._unbatch(gamma, batch)

    def viterbi(
        self, observations: Any, lengths: Any = None, mask: Any = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The most probable states argmax_z p(z | x) (max-product on eq. 12).

        Returns (paths, log p(z*, x)): paths (N, T) long (-1 on padding) and (N,), or (T,)
        and a scalar for one sequence. The path is the one ``infer_discrete(temperature=0)``
        finds on :meth:`model`.
        """
        with hmm_ops.kernel_threads(self.init_probs.device):
            batch = self._as_batch(observations, lengths, mask)
            log_b = self._log_emission(batch)
            path, best = hmm_ops.viterbi(
                log_b, self.init_probs.log(), self.trans_probs.log(), batch.mask
            )
        self._check_possible(best)
        return self._unbatch(path, batch), self._unbatch(best, batch)

    @staticmethod
    def _check_possible(log_prob: torch.Tensor) -> None:
        impossible = ~(log_prob > -math.inf)
        if impossible.any():
            n = int(impossible.nonzero()[0])
            raise ZeroProbabilityEvidence(
                f"sequence {n} has probability zero under the model (no state path can emit it)"
            )

    # ------------------------------------------------------------------ sampling
    def sample(
        self, n: int, length: int, seed: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw n sequences of ``length`` steps by ancestral sampling of eq. 12.

        Returns (states (n, length) long, observations (n, length) long or
        (n, length, D) float). Vectorised over sequences; one step of the chain per time step.
        """
        check_int(n, "n")
        check_int(length, "length")
        device = self.init_probs.device
        g = torch.Generator(device=device)
        g.manual_seed(int(seed) if seed is not None else int(torch.randint(2**31, ())))
        uniforms = torch.rand(n, length, generator=g, dtype=self.dtype, device=device)
        init_cdf = self.init_probs.cumsum(-1)
        trans_cdf = self.trans_probs.cumsum(-1)
        last = self.n_states - 1
        z = (uniforms[:, :1] > init_cdf).sum(-1).clamp(max=last)
        states = [z]
        for t in range(1, length):
            z = (uniforms[:, t : t + 1] > trans_cdf[z]).sum(-1).clamp(max=last)
            states.append(z)
        z_all = torch.stack(states, 1)
        if self.emission == "categorical":
            cdf = self.emission_probs.cumsum(-1)[z_all]  # (n, T, V)
            u = torch.rand(n, length, 1, generator=g, dtype=self.dtype, device=device)
            x = (u > cdf).sum(-1).clamp(max=self.n_symbols - 1)
        else:
            noise = torch.randn(
                n, length, self.n_features, generator=g, dtype=self.dtype, device=device
            )
            x = self.means[z_all] + self.variances[z_all].sqrt() * noise
        return z_all, x

    # ------------------------------------------------------------------ Pyro model / guide
    def _priors(self) -> dict[str, dist.Distribution]:
        k, alpha = self.n_states, self.concentration
        ones = self.init_probs.new_ones
        priors: dict[str, dist.Distribution] = {
            "init_probs": dist.Dirichlet(alpha * ones(k)),
            "trans_probs": dist.Dirichlet(alpha * ones(k, k)).to_event(1),
        }
        if self.emission == "categorical":
            priors["emission_probs"] = dist.Dirichlet(alpha * ones(k, self.n_symbols)).to_event(1)
        else:
            d = self.n_features
            priors["means"] = dist.Normal(ones(k, d) * 0.0, 10.0 * ones(k, d)).to_event(2)
            priors["variances"] = dist.InverseGamma(ones(k, d), ones(k, d)).to_event(2)
        return priors

    def model(
        self, observations: Any = None, lengths: Any = None, states: Any = None, **kwargs: Any
    ) -> None:
        """Eq. 12 as a Pyro program: Dirichlet priors, z_t enumerated under ``pyro.markov``.

        Known states (``states`` >= 0) are clamped by a factor 1[z_t = state]; padded steps
        keep z (an identity transition) and emit nothing; NaN observations are masked out.
        """
        batch = observations if isinstance(observations, Batch) else None
        if batch is None:
            batch = self._as_batch(observations, lengths, kwargs.get("mask"), states)
        self._model(batch)

    def _model(self, batch: Batch) -> dict[str, torch.Tensor]:
        params = {name: pyro.sample(name, prior) for name, prior in self._priors().items()}
        n, length = batch.shape
        init, trans = params["init_probs"], params["trans_probs"]
        eye = torch.eye(self.n_states, dtype=trans.dtype, device=trans.device)
        observed = batch.observed_mask()
        z = None
        with pyro.plate("sequences", n, dim=-1):
            for t in pyro.markov(range(length)):
                if z is None:
                    probs = init
                else:
                    probs = trans[z]
                    if batch.mask is not None:
                        probs = torch.where(batch.mask[:, t, None], probs, eye[z])
                z = pyro.sample(f"z_{t}", dist.Categorical(probs), infer={"enumerate": "parallel"})
                if batch.labels is not None:
                    label = batch.labels[:, t]
                    allowed = (z == label) | (label < 0)
                    pyro.factor(
                        f"label_{t}",
                        torch.where(allowed, 0.0, -math.inf).to(trans.dtype),
                    )
                if self.emission == "categorical":
                    emit = dist.Categorical(params["emission_probs"][z])
                    pyro.sample(f"x_{t}", emit.mask(observed[:, t]), obs=batch.values[:, t])
                else:
                    loc, var = params["means"][z], params["variances"][z]
                    emit = dist.Normal(loc, var.sqrt()).mask(observed[:, t])
                    pyro.sample(f"x_{t}", emit.to_event(1), obs=batch.values[:, t])
        return params

    def guide(
        self, observations: Any = None, lengths: Any = None, states: Any = None, **kwargs: Any
    ) -> dict[str, torch.Tensor]:
        """MAP guide: a point mass (``AutoDelta``) on the probability tables; the states are
        summed out exactly by ``TraceEnum_ELBO``."""
        batch = observations if isinstance(observations, Batch) else None
        if batch is None:
            batch = self._as_batch(observations, lengths, kwargs.get("mask"), states)
        return self._get_autoguide()(batch)

    def _get_autoguide(self) -> AutoDelta:
        if self.__dict__.get("_autoguide") is None:
            values = {name: value for name, value in self.params.items()}
            guide = AutoDelta(
                poutine.block(self._model, expose=list(_GLOBALS)),
                init_loc_fn=init_to_value(values=values),
            )
            guide._pyro_name = f"{self._pyro_name}.autoguide"
            self.__dict__["_autoguide"] = guide
        return self.__dict__["_autoguide"]

    def infer_states(self, observations: Any, lengths: Any = None, temperature: int = 0):
        """Pyro's ``infer_discrete`` on :meth:`model` with the current parameters.

        temperature 0 gives the MAP states (the Viterbi path), 1 a posterior sample. Slow
        (a Python loop over time through Pyro): for checks and small data; use
        :meth:`viterbi` otherwise. Returns (N, T) (or (T,)) states.
        """
        batch = self._as_batch(observations, lengths)
        conditioned = poutine.condition(self._model, data=self.params)
        decoder = infer_discrete(conditioned, first_available_dim=-2, temperature=temperature)
        trace = poutine.trace(decoder).get_trace(batch)
        n, length = batch.shape
        path = torch.stack([trace.nodes[f"z_{t}"]["value"].reshape(n) for t in range(length)], 1)
        if batch.mask is not None:
            path = torch.where(batch.mask, path, torch.full_like(path, -1))
        return self._unbatch(path, batch)

    # ------------------------------------------------------------------ learning
    def fit(
        self,
        observations: Any,
        states: Any = None,
        lengths: Any = None,
        mask: Any = None,
        *,
        method: str = "auto",
        n_iter: int = 100,
        tol: float = 1e-6,
        steps: int = 500,
        lr: float = 0.05,
        progress: bool = False,
        seed: int | None = None,
    ) -> HiddenMarkovModel:
        """Learn the tables by MAP with Dirichlet(concentration) priors.

        * every state known (``states`` without -1): closed-form counts (supervised);
        * no or some states known (-1 = unknown): ``method="em"`` (default), Baum-Welch on
          the fast kernels, E-step with the known states clamped, until the log posterior
          improves by less than ``tol`` (relative) or ``n_iter`` iterations; or
          ``method="svi"``: ``fit_svi`` with ``TraceEnum_ELBO`` and the ``AutoDelta`` guide
          (``steps`` Adam steps of rate ``lr``).

        NaN observations are summed out in every method. ``self.history_`` holds the log
        joint (log p(x, known states | params) + log prior) per EM iteration, or the SVI
        losses.
        """
        if method not in ("auto", "counts", "em", "svi"):
            raise ConfigurationError(f"method must be auto, counts, em or svi; got {method!r}")
        batch = self._as_batch(observations, lengths, mask, states)
        real = batch.mask
        if real is None:
            real = torch.ones(batch.shape, dtype=torch.bool, device=batch.values.device)
        fully_labelled = batch.labels is not None and bool((batch.labels[real] >= 0).all())
        if method == "counts" and not fully_labelled:
            raise ConfigurationError("method='counts' needs every state given (no -1)")
        if method == "auto":
            method = "counts" if fully_labelled else "em"
        if method == "counts":
            weights = torch.nn.functional.one_hot(batch.labels.clamp(min=0), self.n_states)
            weights = (weights * real[..., None]).to(self.dtype)
            first = weights[:, 0]
            pairs = weights[:, :-1, :, None] * weights[:, 1:, None, :]
            self._m_step(batch, first.sum(0), pairs.sum((0, 1)), weights)
            self.history_ = [float(self._log_joint(batch))]
        elif method == "em":
            with hmm_ops.kernel_threads(self.init_probs.device):
                self._baum_welch(batch, n_iter, tol)
        else:
            self._fit_svi(batch, steps, lr, progress, seed)
        return self

    def _m_step(
        self, batch: Batch, first: torch.Tensor, pairs: torch.Tensor, gamma: torch.Tensor
    ) -> None:
        """MAP tables from expected counts: (counts + alpha - 1) normalised (Dirichlet mode)."""
        extra = self.concentration - 1.0

        def normalise(counts: torch.Tensor) -> torch.Tensor:
            counts = (counts + extra).clamp(min=0)
            total = counts.sum(-1, keepdim=True)
            uniform = torch.full_like(counts, 1.0 / counts.shape[-1])
            return torch.where(total > 0, counts / total.clamp(min=1e-300), uniform)

        self.init_probs.copy_(normalise(first))
        self.trans_probs.copy_(normalise(pairs))
        if self.emission == "categorical":
            w = gamma * batch.observed_mask()[..., None]
            counts = torch.zeros(
                self.n_symbols, self.n_states, dtype=self.dtype, device=w.device
            ).index_add_(0, batch.values.reshape(-1), w.reshape(-1, self.n_states))
            self.emission_probs.copy_(normalise(counts.T))
        else:
            w = gamma[..., None] * batch.observed_mask()[:, :, None, :]  # (N, T, K, D)
            x = batch.values[:, :, None, :]
            total = w.sum((0, 1))
            safe = total.clamp(min=1e-300)
            means = (w * x).sum((0, 1)) / safe
            var = (w * (x - means) ** 2).sum((0, 1)) / safe
            keep = total > 0
            self.means.copy_(torch.where(keep, means, self.means))
            self.variances.copy_(
                torch.where(keep, var.clamp(min=self.min_variance), self.variances)
            )

    def _log_prior(self) -> torch.Tensor:
        priors = self._priors()
        if self.emission == "gaussian":  # EM here is maximum likelihood for the Gaussians
            priors = {k: v for k, v in priors.items() if k.endswith("probs")}
        params = self.params
        total = torch.zeros((), dtype=self.dtype, device=self.init_probs.device)
        if self.concentration != 1.0:
            for name, prior in priors.items():
                total = total + prior.log_prob(params[name].clamp(min=1e-300)).sum()
        return total

    def _log_joint(self, batch: Batch) -> torch.Tensor:
        b, offset = self._factors(batch)
        log_p = hmm_ops.forward_log_prob(b, self.init_probs, self.trans_probs, batch.mask, offset)
        return log_p.sum() + self._log_prior()

    def _baum_welch(self, batch: Batch, n_iter: int, tol: float) -> None:
        """EM (Baum-Welch): E-step = forward-backward, M-step = normalised expected counts."""
        self.history_ = []
        previous = -math.inf
        for _ in range(n_iter):
            b, offset = self._factors(batch)
            gamma, log_prob, xi = hmm_ops.forward_backward(
                b, self.init_probs, self.trans_probs, batch.mask, offset, transitions=True
            )
            self._check_possible(log_prob)
            current = float(log_prob.sum() + self._log_prior())
            self.history_.append(current)
            if current - previous <= tol * abs(current):
                break
            previous = current
            self._m_step(batch, gamma[:, 0].sum(0), xi, gamma)

    def _fit_svi(self, batch: Batch, steps: int, lr: float, progress: bool, seed: int | None):
        self.__dict__["_autoguide"] = None
        guide = self._get_autoguide()
        history = fit_svi(
            self._model,
            guide,
            batch,
            loss=TraceEnum_ELBO(max_plate_nesting=self.max_plate_nesting),
            optim=pyro.optim.Adam({"lr": lr}),
            steps=steps,
            progress=progress,
            seed=seed,
            description="hmm svi",
        )
        with torch.no_grad():
            found = guide.median(batch)
        self.set_params(**{name: value.detach() for name, value in found.items()})
        self.history_ = list(history.losses)


def _lookup(table: torch.Tensor, symbols: torch.Tensor) -> torch.Tensor:
    """Rows of ``table`` (V, K) at integer ``symbols`` (...): (..., K) (``index_select`` on
    the flattened symbols is several times faster than advanced indexing)."""
    rows = table.contiguous().index_select(0, symbols.reshape(-1))
    return rows.reshape(*symbols.shape, table.shape[1])


def permutation_match(true_emission: torch.Tensor, learned_emission: torch.Tensor) -> torch.Tensor:
    """The relabelling p (learned state p[k] plays true state k) that minimises the summed
    distance between emission parameters (Hungarian algorithm): HMMs are identifiable only
    up to a permutation of their states."""
    from scipy.optimize import linear_sum_assignment

    k = true_emission.shape[0]
    cost = torch.cdist(true_emission.reshape(k, -1), learned_emission.reshape(k, -1))
    _, cols = linear_sum_assignment(cost.cpu().numpy())
    return torch.as_tensor(cols, device=true_emission.device)


__all__: Sequence[str] = ["HiddenMarkovModel", "permutation_match"]
