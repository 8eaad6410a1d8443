"""Hidden Markov models (notes 2.1.3.4, eq. 12, Figura 5): a Bayesian network over sequences.

    p(z, x) = p(z_1) prod_{t=1}^{T-1} p(z_{t+1} | z_t) prod_{t=1}^{T} p(x_t | z_t)     (12)

A latent Markov chain z_1 -> z_2 -> ... emits one observation x_t per step (Figura 5,
:meth:`HiddenMarkovModel.graph`). :class:`HiddenMarkovModel` is a Pyro model/guide pair
(states enumerated under ``pyro.markov``; Dirichlet priors on the probability tables) with
exact queries on fast chunked kernels (:mod:`pyrobn.infer.hmm_ops`): ``log_prob`` (forward
algorithm), ``predict_proba`` = ``posterior_marginals`` (forward-backward), ``predict`` =
the path of ``viterbi`` (max-product) and ``sample``. ``fit`` learns from labelled states
(counts), unlabelled or partly labelled sequences (Baum-Welch EM with Dirichlet MAP through
:func:`pyrobn.infer.em.run_em`, or SVI with ``TraceEnum_ELBO`` and ``AutoDelta`` through
:func:`pyrobn.infer.map.map_estimate`), and sums out missing observations (NaN).

Data layout (one rule for ``log_prob``, ``fit``, ``viterbi``, ``predict``,
``predict_proba``, ``posterior_marginals``, ``model``/``guide``, and what ``sample``
returns):

* categorical emissions: one sequence is (T,) (integer symbols; floats with NaN for a
  missing symbol), a batch is (N, T);
* Gaussian emissions with D = ``n_features``: one sequence is (T, D), a batch is
  (N, T, D), for every D, as hmmlearn reads its (n_samples, n_features) arrays. When
  D = 1, a 1-D (T,) tensor is one sequence as well (its feature axis left out). A 2-D
  tensor is therefore never a batch for Gaussian emissions: a batch of scalar sequences
  is (N, T, 1) (``sample`` returns exactly that) or a list;
* a list of sequences of different lengths, each in the one-sequence layout (a nested
  Python list of numbers that is rectangular is read as one array, by the rules above);
* ``lengths=`` (N,) or a prefix ``mask=`` (N, T) mark the real steps of a padded batch.

One sequence gives unbatched results ((T,) paths, (T, K) marginals, a scalar log p).
"""

from __future__ import annotations

import math
import numbers
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.infer import TraceEnum_ELBO, infer_discrete
from pyro.infer.autoguide import AutoDelta, init_to_value

from pyrobn.errors import (
    ConfigurationError,
    ConvergenceWarning,
    OutOfSupportError,
    ShapeError,
    ZeroProbabilityEvidence,
)
from pyrobn.graph import GraphNode, ModelGraph
from pyrobn.infer import hmm_ops
from pyrobn.infer.em import run_em
from pyrobn.infer.params import release_with, unique_name
from pyrobn.infer.result import FitResult
from pyrobn.models.base import PyrobnModule
from pyrobn.random import generator
from pyrobn.validation import (
    check_allocation,
    check_distribution,
    check_finite,
    check_int,
    check_integers_in_range,
    check_positive,
    check_shape,
    to_real_tensor,
)

__all__ = ["HiddenMarkovModel", "permutation_match"]

_EMISSIONS = ("categorical", "gaussian")
_METHODS = ("auto", "counts", "em", "svi")
_GLOBALS = ("init_probs", "trans_probs", "emission_probs", "means", "variances")
#: float64 copies of an (N, T, K) array the queries hold at once (forward-backward's
#: forward and backward vectors, their product and the emission factors)
_WORK_COPIES = {"log_prob": 3, "marginals": 8, "viterbi": 4}


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


def _as_tensor(x: Any, name: str) -> torch.Tensor:
    """``x`` as a tensor of its natural dtype, or a pyrobn error for what is not numbers
    (strings, objects, ragged nesting, complex values, integers too large for int64)."""
    if isinstance(x, torch.Tensor):
        tensor = x
    else:
        if isinstance(x, str | bytes):
            raise ConfigurationError(f"{name} must be numbers, got the string {x!r}")
        try:
            array = np.asarray(x)
        except (ValueError, TypeError) as exc:
            raise ShapeError(f"{name} must be a rectangular array of numbers: {exc}") from None
        except OverflowError:
            raise OutOfSupportError(f"{name} holds an integer too large for int64") from None
        if array.dtype == object:
            raise ShapeError(
                f"{name} must be a rectangular array of numbers (ragged, mixed or too-large "
                "values given)"
            )
        if array.dtype.kind in "USVMm":
            raise ConfigurationError(f"{name} must be numbers, got an array of {array.dtype}")
        if array.dtype.kind == "u" and array.dtype.itemsize == 8:
            array = array.astype(np.float64)  # torch has no uint64 arithmetic
        tensor = torch.from_numpy(np.ascontiguousarray(array))
    if tensor.is_complex():
        raise ConfigurationError(f"{name} must be real, got complex values ({tensor.dtype})")
    if tensor.dtype == torch.bool:
        raise ConfigurationError(f"{name} must be numbers, got booleans")
    return tensor


def _is_bool_array(x: Any) -> bool:
    """Whether ``x`` converts to a NumPy array of booleans."""
    try:
        return np.asarray(x).dtype == np.bool_
    except (ValueError, TypeError, OverflowError):
        return False


def _is_sequence_list(observations: Any) -> bool:
    """Whether ``observations`` is a list of sequences rather than one array: a list or
    tuple whose items are tensors or arrays, or a nested list that is not rectangular."""
    if not isinstance(observations, list | tuple) or not observations:
        return False
    first = observations[0]
    if isinstance(first, numbers.Number) or first is None:
        return False
    if isinstance(first, torch.Tensor | np.ndarray):
        return True
    try:
        array = np.asarray(observations)
    except (ValueError, TypeError, OverflowError):
        return True
    return array.dtype == object


class HiddenMarkovModel(PyrobnModule):
    """An HMM with K hidden states and categorical or diagonal-Gaussian emissions (eq. 12).

    Args:
        n_states: K, the number of hidden states.
        emission: ``"categorical"`` (needs ``n_symbols``) or ``"gaussian"`` (``n_features``
            dimensions, diagonal covariance).
        n_symbols: V, the vocabulary size of categorical emissions.
        n_features: D, the dimension of Gaussian emissions.
        concentration: α of the Dirichlet(α) prior on every probability row: MAP adds
            α − 1 pseudo-counts to every count (α = 1 is flat, so MAP = MLE).
        min_variance: the floor of Gaussian variances in ``fit``.
        seed: seed of the random initial parameters.
        init_probs, trans_probs, emission_probs, means, variances: parameters to start from
            (validated: rows must be distributions, variances positive).

    Raises:
        ConfigurationError, ShapeError, InvalidDistributionError: invalid arguments.
        SizeLimitError: the tables would exceed the memory budget.

    Example:
        >>> hmm = HiddenMarkovModel(2, "categorical", n_symbols=3, trans_probs=[[.9, .1], [.2, .8]])
        >>> round(float(hmm.log_prob(torch.tensor([0, 2, 1]))), 4)   # forward algorithm
        -3.4676
        >>> hmm.predict(torch.tensor([0, 2, 1])).tolist()            # the Viterbi path
        [1, 1, 1]
        >>> hmm.n_parameters                                         # 1 + 2 + 4
        7
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
        k = check_int(n_states, "n_states")
        if not isinstance(emission, str) or emission not in _EMISSIONS:
            raise ConfigurationError(f"emission must be one of {_EMISSIONS}, got {emission!r}")
        if emission == "categorical":
            n_symbols = check_int(n_symbols, "n_symbols (categorical emissions)")
        elif n_symbols is not None:
            n_symbols = check_int(n_symbols, "n_symbols")
        n_features = check_int(n_features, "n_features")
        check_positive(concentration, "concentration")
        check_positive(min_variance, "min_variance")
        seed = check_int(seed, "seed", low=0)
        width = n_symbols if emission == "categorical" else 2 * n_features
        check_allocation(
            k * (k + 1 + width), torch.float64, f"the tables of an HMM with {k} states"
        )
        super().__init__(
            n_states=k,
            emission=emission,
            n_symbols=n_symbols,
            n_features=n_features,
            concentration=float(concentration),
            min_variance=float(min_variance),
            seed=seed,
        )
        self.n_states = k
        self.emission = emission
        self.n_symbols = n_symbols
        self.n_features = n_features
        self.concentration = float(concentration)
        self.min_variance = float(min_variance)
        g = torch.Generator().manual_seed(seed)
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
        self.__dict__["_autoguide"] = None

    # ------------------------------------------------------------------ parameters
    def _table_names(self) -> list[str]:
        names = ["init_probs", "trans_probs"]
        return names + (
            ["emission_probs"] if self.emission == "categorical" else ["means", "variances"]
        )

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
        checked = {}
        for name, value in params.items():
            if value is None:
                continue
            if name not in expected:
                raise ConfigurationError(f"unknown HMM parameter {name!r}")
            if name not in self._table_names():
                raise ConfigurationError(f"{name} does not apply to {self.emission} emissions")
            tensor = to_real_tensor(value, name, dtype=torch.float64, device=self.init_probs.device)
            check_shape(tensor, expected[name], name)
            self._check_table(name, tensor)
            checked[name] = tensor
        for name, tensor in checked.items():
            getattr(self, name).copy_(tensor)
        self.__dict__["_autoguide"] = None  # a guide built earlier starts elsewhere
        return self

    @staticmethod
    def _check_table(name: str, tensor: torch.Tensor) -> None:
        if name.endswith("probs"):
            check_distribution(tensor, name)
        else:
            check_finite(tensor, name)
            if name == "variances":
                check_positive(tensor, name)

    def _check_state(self) -> None:
        """A loaded file passes the constructor's checks: rows are distributions, means
        finite, variances positive."""
        super()._check_state()
        for name in self._table_names():
            self._check_table(name, getattr(self, name))

    @property
    def params(self) -> dict[str, torch.Tensor]:
        """The current parameter tables (clones)."""
        return {name: getattr(self, name).clone() for name in self._table_names()}

    @property
    def dtype(self) -> torch.dtype:
        return self.init_probs.dtype

    @property
    def n_parameters(self) -> int:
        """Free parameters: (K − 1) + K(K − 1) + K(V − 1) for categorical emissions,
        (K − 1) + K(K − 1) + 2KD for diagonal Gaussians (each probability row loses one
        to its sum). The joint table of T steps of V symbols would need V^T − 1."""
        k = self.n_states
        emission = (
            k * (self.n_symbols - 1) if self.emission == "categorical" else 2 * k * self.n_features
        )
        return (k - 1) + k * (k - 1) + emission

    # ------------------------------------------------------------------ the graph
    def graph(self, steps: int = 4) -> ModelGraph:
        """Figura 5 of the notes: the latent chain z_1 -> z_2 -> ... (discrete), each z_t
        emitting the observed x_t, drawn for ``steps`` time steps inside the data plate.

        >>> g = HiddenMarkovModel(2, n_symbols=3).graph(3)
        >>> g.parents("x_2"), g.d_separated("x_1", "x_3", given=["z_2"])
        (('z_2',), True)
        """
        steps = check_int(steps, "steps")
        discrete_x = self.emission == "categorical"
        nodes, edges = [], []
        for t in range(1, steps + 1):
            nodes.append(GraphNode(f"z_{t}", "latent", discrete=True, label=f"$z_{t}$"))
            nodes.append(GraphNode(f"x_{t}", "observed", discrete=discrete_x, label=f"$x_{t}$"))
            edges.append((f"z_{t}", f"x_{t}"))
            if t > 1:
                edges.append((f"z_{t - 1}", f"z_{t}"))
        members = [n.name for n in nodes]
        return ModelGraph(
            nodes, edges, plates={"data": (members, "N")}, title="HMM (eq. 12, Figura 5)"
        )

    # ------------------------------------------------------------------ data preparation
    def _as_batch(
        self,
        observations: Any,
        lengths: Any = None,
        mask: Any = None,
        states: Any = None,
    ) -> Batch:
        """Validate and pad the observations (layout: the module docstring); raise pyrobn
        errors naming the fault."""
        if isinstance(observations, Batch):
            return observations
        device = self.init_probs.device
        categorical = self.emission == "categorical"
        d = self.n_features
        one = "(T,)" if categorical else (f"(T, {d})" + (" or (T,)" if d == 1 else ""))
        many = "(N, T)" if categorical else f"(N, T, {d})"
        single = False
        if _is_sequence_list(observations):
            if lengths is not None or mask is not None:
                raise ConfigurationError("a list of sequences carries its own lengths")
            seqs = []
            for i, s in enumerate(observations):
                s = _as_tensor(s, f"observations[{i}]")
                if not categorical and s.dim() == 1 and d == 1:
                    s = s[:, None]
                per_step = 1 if categorical else 2
                if s.dim() != per_step or s.shape[0] == 0 or (not categorical and s.shape[1] != d):
                    raise ShapeError(
                        f"sequence {i} must be a non-empty sequence of shape {one}, got shape "
                        f"{tuple(s.shape)}"
                    )
                seqs.append(s)
            lengths = [s.shape[0] for s in seqs]
            floating = not categorical or any(s.is_floating_point() for s in seqs)
            dtype = torch.float64 if floating else torch.long
            x = torch.nn.utils.rnn.pad_sequence([s.to(dtype) for s in seqs], batch_first=True)
        else:
            x = _as_tensor(observations, "observations")
            shape = tuple(x.shape)
            if categorical:
                if x.dim() == 1:
                    single, x = True, x[None]
            elif x.dim() == 1 and d == 1:
                single, x = True, x[None, :, None]
            elif x.dim() == 2:
                if x.shape[1] != d:
                    hint = "; a batch of scalar sequences is (N, T, 1) or a list" if d == 1 else ""
                    raise ShapeError(
                        f"observations of shape {shape}: a 2-D tensor is one sequence "
                        f"(T, {d}) for Gaussian emissions with n_features={d}{hint}"
                    )
                single, x = True, x[None]
            if x.dim() != (2 if categorical else 3) or (not categorical and x.shape[2] != d):
                raise ShapeError(
                    f"observations must have shape {many} (a batch) or {one} (one sequence), "
                    f"got {shape}"
                )
        x = x.to(device)
        if not categorical:
            x = x.to(self.dtype)
        n, length = x.shape[:2]
        if n == 0:
            raise ShapeError("observations hold no sequences")
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
            lengths = _as_tensor(lengths, "lengths")
            if lengths.dim() == 0:
                lengths = lengths[None]
            check_shape(lengths, (n,), "lengths")
            check_integers_in_range(lengths, 1, length + 1, f"lengths (1..T = {length})")
            real = torch.arange(length)[None, :] < lengths.long().cpu()[:, None]
        elif mask is not None:
            if isinstance(mask, torch.Tensor) and mask.dtype == torch.bool:
                real = mask
            elif not isinstance(mask, torch.Tensor | str | bytes) and _is_bool_array(mask):
                real = torch.from_numpy(np.asarray(mask))
            else:
                real = _as_tensor(mask, "mask")
                check_integers_in_range(real, 0, 2, "mask (True/False or 1/0)")
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
        if _is_sequence_list(states):
            seqs = [_as_tensor(s, f"states[{i}]") for i, s in enumerate(states)]
            for i, s in enumerate(seqs):
                if s.dim() != 1:
                    raise ShapeError(f"states[{i}] must be 1-D, got shape {tuple(s.shape)}")
            dtype = torch.float64 if any(s.is_floating_point() for s in seqs) else torch.long
            labels = torch.nn.utils.rnn.pad_sequence(
                [s.to(dtype) for s in seqs], batch_first=True, padding_value=-1
            )
        else:
            labels = _as_tensor(states, "states")
            if single and labels.dim() == 1:
                labels = labels[None]
        check_shape(labels, (n, length), "states")
        labels = labels.to(real.device)
        if labels.is_floating_point():
            labels = torch.where(labels.isnan(), torch.full_like(labels, -1), labels)
        labels = torch.where(real, labels, torch.full_like(labels, -1))
        check_integers_in_range(labels, 0, self.n_states, "states", allow=-1)
        return labels.long()

    def _check_work(self, batch: Batch, what: str) -> None:
        """A size guard before the (N, T, K) arrays of a query."""
        n, length = batch.shape
        check_allocation(
            _WORK_COPIES[what] * n * length * self.n_states,
            self.dtype,
            f"{what} of {n} x {length} steps with {self.n_states} states",
        )

    # ------------------------------------------------------------------ emission factors
    def _log_emission(self, batch: Batch, params: dict[str, torch.Tensor] | None = None):
        """log p(x_t | z_t = k) as (N, T, K); 0 on missing and padded steps."""
        p = params if params is not None else self._buffers
        if self.emission == "categorical":
            log_b = _lookup(p["emission_probs"].log().T, batch.values)
            if batch.observed is None:
                return log_b
            return torch.where(batch.observed[..., None], log_b, torch.zeros_like(log_b))
        x = batch.values[:, :, None, :]  # (N, T, 1, D)
        normal = torch.distributions.Normal(
            p["means"], p["variances"].sqrt(), validate_args=False
        )  # the values were checked at the boundary
        per_dim = normal.log_prob(x)
        per_dim = torch.where(batch.observed[:, :, None, :], per_dim, torch.zeros_like(per_dim))
        return per_dim.sum(-1)

    def _factors(
        self, batch: Batch, params: dict[str, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Emission factors b (N, T, K) for the sum-product kernels and their log offsets."""
        p = params if params is not None else self._buffers
        if self.emission == "categorical":
            b = _lookup(p["emission_probs"].T, batch.values)
            if batch.observed is not None:
                b = torch.where(batch.observed[..., None], b, torch.ones_like(b))
            offset = None
        else:
            log_b = self._log_emission(batch, params)
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
        with hmm_ops.kernel_threads(self.init_probs.device):  # the checks' reductions too
            batch = self._as_batch(observations, lengths, mask)
            self._check_work(batch, "log_prob")
            b, offset = self._factors(batch)
            result = hmm_ops.forward_log_prob(
                b, self.init_probs, self.trans_probs, batch.mask, offset
            )
        return self._unbatch(result, batch)

    def posterior_marginals(
        self, observations: Any, lengths: Any = None, mask: Any = None
    ) -> torch.Tensor:
        """p(z_t = k | x) by forward-backward: (N, T, K) (0 on padding), or (T, K)."""
        with hmm_ops.kernel_threads(self.init_probs.device):  # the checks' reductions too
            batch = self._as_batch(observations, lengths, mask)
            self._check_work(batch, "marginals")
            b, offset = self._factors(batch)
            gamma, log_prob, _ = hmm_ops.forward_backward(
                b, self.init_probs, self.trans_probs, batch.mask, offset
            )
        self._check_possible(log_prob)
        return self._unbatch(gamma, batch)

    def predict_proba(
        self, observations: Any, lengths: Any = None, mask: Any = None
    ) -> torch.Tensor:
        """The posterior over the latent state of every step, p(z_t = k | x): the same as
        :meth:`posterior_marginals` (forward-backward). (N, T, K), or (T, K)."""
        return self.posterior_marginals(observations, lengths, mask)

    def viterbi(
        self, observations: Any, lengths: Any = None, mask: Any = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The most probable states argmax_z p(z | x) (max-product on eq. 12).

        Returns (paths, log p(z*, x)): paths (N, T) long (-1 on padding) and (N,), or (T,)
        and a scalar for one sequence. The path is the one ``infer_discrete(temperature=0)``
        finds on :meth:`model`.
        """
        with hmm_ops.kernel_threads(self.init_probs.device):  # the checks' reductions too
            batch = self._as_batch(observations, lengths, mask)
            self._check_work(batch, "viterbi")
            log_b = self._log_emission(batch)
            path, best = hmm_ops.viterbi(
                log_b, self.init_probs.log(), self.trans_probs.log(), batch.mask
            )
        self._check_possible(best)
        return self._unbatch(path, batch), self._unbatch(best, batch)

    def predict(self, observations: Any, lengths: Any = None, mask: Any = None) -> torch.Tensor:
        """The most probable state path argmax_z p(z | x): the path of :meth:`viterbi`
        ((N, T) long, -1 on padding; (T,) for one sequence)."""
        return self.viterbi(observations, lengths, mask)[0]

    @staticmethod
    def _check_possible(log_prob: torch.Tensor) -> None:
        impossible = ~(log_prob > -math.inf)
        if impossible.any():
            n = int(impossible.reshape(-1).nonzero()[0])
            raise ZeroProbabilityEvidence(
                f"sequence {n} has probability zero under the model (no state path can emit it)"
            )

    # ------------------------------------------------------------------ sampling
    def sample(
        self, n: int, length: int, seed: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw n sequences of ``length`` steps by ancestral sampling of eq. 12.

        Returns (states (n, length) long, observations (n, length) long or
        (n, length, D) float: the batch layout every method reads). Vectorised over
        sequences; one step of the chain per time step. ``seed`` seeds a generator of its
        own (the caller's random streams are untouched); None draws its seed from torch's
        global generator.

        >>> hmm = HiddenMarkovModel(2, "gaussian", n_features=1)
        >>> z, x = hmm.sample(3, 5, seed=0)
        >>> tuple(z.shape), tuple(x.shape), tuple(hmm.log_prob(x[0]).shape)
        ((3, 5), (3, 5, 1), ())
        """
        n = check_int(n, "n")
        length = check_int(length, "length")
        width = 1 if self.emission == "categorical" else self.n_features
        check_allocation(
            float(n) * length * (3 + width),
            self.dtype,
            f"sample of {n} sequences x {length} steps",
        )
        device = self.init_probs.device
        g = generator(seed, device)
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
            u = torch.rand(n, length, generator=g, dtype=self.dtype, device=device)
            x = torch.empty_like(z_all)
            cdf = self.emission_probs.cumsum(-1)
            for k in range(self.n_states):  # the number of cdf entries below u, state by state
                rows = z_all == k
                x[rows] = torch.searchsorted(cdf[k], u[rows], side="left")
            x = x.clamp(max=self.n_symbols - 1)
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
    ) -> dict[str, torch.Tensor]:
        """Eq. 12 as a Pyro program: Dirichlet priors, z_t enumerated under ``pyro.markov``
        inside the data plate ``"data"`` (one entry per sequence).

        Known states (``states`` >= 0) are clamped by a factor 1[z_t = state]; padded steps
        keep z (an identity transition) and emit nothing; NaN observations are masked out.
        """
        batch = self._as_batch(observations, lengths, kwargs.get("mask"), states)
        return self._model(batch)

    def _model(self, batch: Batch) -> dict[str, torch.Tensor]:
        params = {name: pyro.sample(name, prior) for name, prior in self._priors().items()}
        n, length = batch.shape
        init, trans = params["init_probs"], params["trans_probs"]
        eye = torch.eye(self.n_states, dtype=trans.dtype, device=trans.device)
        observed = batch.observed_mask()
        z = None
        with pyro.plate("data", n, dim=-1):
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
        """MAP guide: a point mass (``AutoDelta``) on the probability tables, started at
        the current parameters; the states are summed out exactly by ``TraceEnum_ELBO``.
        Its parameters live in Pyro's param store under the model's own name
        (``self._guide_prefix("map")``)."""
        batch = self._as_batch(observations, lengths, kwargs.get("mask"), states)
        return self._get_autoguide()(batch)

    def _get_autoguide(self) -> AutoDelta:
        if self.__dict__.get("_autoguide") is None:
            guide = AutoDelta(
                poutine.block(self._model, expose=list(_GLOBALS)),
                init_loc_fn=init_to_value(values=self.params),
            )
            prefix = unique_name(self._guide_prefix("map"))
            guide._pyro_name = prefix
            release_with(guide, prefix)
            self.__dict__["_autoguide"] = guide
        return self.__dict__["_autoguide"]

    def infer_states(self, observations: Any, lengths: Any = None, temperature: int = 0):
        """Pyro's ``infer_discrete`` on :meth:`model` with the current parameters.

        temperature 0 gives the MAP states (the Viterbi path), 1 a posterior sample. Slow
        (a Python loop over time through Pyro): for checks and small data; use
        :meth:`viterbi` otherwise. Returns (N, T) (or (T,)) states.
        """
        if temperature not in (0, 1) or isinstance(temperature, bool):
            raise ConfigurationError(f"temperature must be 0 or 1, got {temperature!r}")
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
        max_iter: int = 100,
        tol: float = 1e-6,
        restarts: int = 1,
        steps: int = 500,
        lr: float = 0.05,
        progress: bool = False,
        seed: int | None = None,
        n_iter: int | None = None,
    ) -> HiddenMarkovModel:
        """Learn the tables by MAP with Dirichlet(concentration) priors; returns the model.

        * every state known (``states`` without -1): closed-form counts (supervised),
          ``method="counts"``;
        * no or some states known (-1 = unknown): ``method="em"`` (default), Baum-Welch on
          the fast kernels through :func:`pyrobn.infer.em.run_em` (E-step: forward-backward
          with the known states clamped; M-step: normalised expected counts + α − 1), at most
          ``max_iter`` iterations, stopping when the objective gains less than
          ``tol * max(1, |objective|)``, best of ``restarts`` starting points (the first is
          the current parameters, the others random tables drawn from ``seed``); or
          ``method="svi"``: ``TraceEnum_ELBO`` with an ``AutoDelta`` guide through
          :func:`pyrobn.infer.map.map_estimate` (``steps`` Adam steps of rate ``lr``).

        NaN observations are summed out in every method. ``fit_result_`` records the
        objective: log p(x, known states | tables) + log p(tables) per EM iteration (the
        Dirichlet log-densities, left out when α = 1 where they are constant; Gaussian
        means and variances are fitted by maximum likelihood), its value after counting,
        or the ELBO of the point-mass guide per SVI step (the log joint, with the Normal
        and inverse-gamma priors of the Pyro model on Gaussian tables). ``n_iter`` is the
        deprecated name of ``max_iter``.
        """
        if n_iter is not None:
            warnings.warn(
                "HiddenMarkovModel.fit(n_iter=) is deprecated; use max_iter=",
                DeprecationWarning,
                stacklevel=2,
            )
            max_iter = n_iter
        if not isinstance(method, str) or method not in _METHODS:
            raise ConfigurationError(f"method must be one of {_METHODS}; got {method!r}")
        max_iter = check_int(max_iter, "max_iter")
        restarts = check_int(restarts, "restarts")
        steps = check_int(steps, "steps")
        check_positive(lr, "lr")
        if isinstance(tol, bool) or not isinstance(tol, numbers.Real) or not tol >= 0:
            raise ConfigurationError(f"tol must be a finite number >= 0, got {tol!r}")
        if seed is not None:
            seed = check_int(seed, "seed", low=0)
        with hmm_ops.kernel_threads(self.init_probs.device):
            batch = self._as_batch(observations, lengths, mask, states)
            self._check_work(batch, "marginals")
        real = batch.mask
        if real is None:
            real = torch.ones(batch.shape, dtype=torch.bool, device=batch.values.device)
        fully_labelled = batch.labels is not None and bool((batch.labels[real] >= 0).all())
        if method == "counts" and not fully_labelled:
            raise ConfigurationError("method='counts' needs every state given (no -1)")
        if method == "auto":
            method = "counts" if fully_labelled else "em"
        with self._fitting(seed):
            if method == "counts":
                result = self._fit_counts(batch, real)
            elif method == "em":
                with hmm_ops.kernel_threads(self.init_probs.device):
                    result = self._fit_em(batch, max_iter, tol, restarts, seed)
            else:
                result = self._fit_svi(batch, steps, lr, progress)
        return self._set_result(result)

    @property
    def _objective_name(self) -> str:
        return "log_likelihood" if self.concentration == 1.0 else "log_posterior"

    def _assign(self, params: dict[str, torch.Tensor]) -> None:
        for name, value in params.items():
            getattr(self, name).copy_(value)
        self.__dict__["_autoguide"] = None

    def _fit_counts(self, batch: Batch, real: torch.Tensor) -> FitResult:
        weights = torch.nn.functional.one_hot(batch.labels.clamp(min=0), self.n_states)
        weights = (weights * real[..., None]).to(self.dtype)
        first = weights[:, 0]
        pairs = weights[:, :-1, :, None] * weights[:, 1:, None, :]
        new = self._m_step(batch, first.sum(0), pairs.sum((0, 1)), weights, self.params)
        self._assign(new)
        value = float(self._log_joint(batch, new))
        return FitResult("counts", [value], objective_name=self._objective_name)

    def _random_start(self, batch: Batch, g: torch.Generator) -> dict[str, torch.Tensor]:
        """Random tables for an EM restart: flat-Dirichlet rows; Gaussian means drawn
        around the data's mean (one standard deviation), variances the data's."""
        k, device, dtype = self.n_states, self.init_probs.device, self.dtype

        def rows(*shape: int) -> torch.Tensor:
            draws = -torch.rand(*shape, generator=g, dtype=dtype).log()
            return (draws / draws.sum(-1, keepdim=True)).to(device)

        start = {"init_probs": rows(k), "trans_probs": rows(k, k)}
        if self.emission == "categorical":
            start["emission_probs"] = rows(k, self.n_symbols)
        else:
            w = batch.observed_mask().to(dtype)
            count = w.sum((0, 1)).clamp(min=1.0)
            mean = (w * batch.values).sum((0, 1)) / count
            var = (w * (batch.values - mean) ** 2).sum((0, 1)) / count
            var = var.clamp(min=self.min_variance)
            noise = torch.randn(k, self.n_features, generator=g, dtype=dtype).to(device)
            start["means"] = mean + var.sqrt() * noise
            start["variances"] = var.expand(k, -1).clone()
        return start

    def _fit_em(
        self, batch: Batch, max_iter: int, tol: float, restarts: int, seed: int | None
    ) -> FitResult:
        """Baum-Welch through :func:`run_em`; the model keeps its tables should it fail."""

        def init(restart: int, g: torch.Generator) -> dict[str, torch.Tensor]:
            return self.params if restart == 0 else self._random_start(batch, g)

        def step(params: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], float]:
            b, offset = self._factors(batch, params)
            gamma, log_prob, xi = hmm_ops.forward_backward(
                b, params["init_probs"], params["trans_probs"], batch.mask, offset, transitions=True
            )
            self._check_possible(log_prob)
            value = float(log_prob.sum() + self._log_prior(params))
            return self._m_step(batch, gamma[:, 0].sum(0), xi, gamma, params), value

        state, result = run_em(
            init,
            step,
            max_iter=max_iter,
            tol=tol,
            restarts=restarts,
            seed=seed,
            objective_name=self._objective_name,
            final=lambda params: float(self._log_joint(batch, params)),
        )
        self._assign(state)
        return result

    def _m_step(
        self,
        batch: Batch,
        first: torch.Tensor,
        pairs: torch.Tensor,
        gamma: torch.Tensor,
        previous: dict[str, torch.Tensor],
    ) -> dict[str, torch.Tensor]:
        """MAP tables from expected counts: (counts + α − 1) normalised (the Dirichlet
        mode); Gaussian means and variances by weighted maximum likelihood (a state with
        no weight keeps its previous ones)."""
        extra = self.concentration - 1.0

        def normalise(counts: torch.Tensor) -> torch.Tensor:
            counts = (counts + extra).clamp(min=0)
            total = counts.sum(-1, keepdim=True)
            uniform = torch.full_like(counts, 1.0 / counts.shape[-1])
            return torch.where(total > 0, counts / total.clamp(min=1e-300), uniform)

        new = {"init_probs": normalise(first), "trans_probs": normalise(pairs)}
        if self.emission == "categorical":
            w = gamma * batch.observed_mask()[..., None]
            counts = torch.zeros(
                self.n_symbols, self.n_states, dtype=self.dtype, device=w.device
            ).index_add_(0, batch.values.reshape(-1), w.reshape(-1, self.n_states))
            new["emission_probs"] = normalise(counts.T)
        else:
            w = gamma[..., None] * batch.observed_mask()[:, :, None, :]  # (N, T, K, D)
            x = batch.values[:, :, None, :]
            total = w.sum((0, 1))
            safe = total.clamp(min=1e-300)
            means = (w * x).sum((0, 1)) / safe
            var = (w * (x - means) ** 2).sum((0, 1)) / safe
            keep = total > 0
            new["means"] = torch.where(keep, means, previous["means"])
            new["variances"] = torch.where(
                keep, var.clamp(min=self.min_variance), previous["variances"]
            )
        return new

    def _log_prior(self, params: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """log p(tables) of the Dirichlet priors (0 when α = 1: a constant left out)."""
        params = self.params if params is None else params
        total = torch.zeros((), dtype=self.dtype, device=self.init_probs.device)
        if self.concentration == 1.0:
            return total
        for name, prior in self._priors().items():
            if name.endswith("probs"):  # EM fits Gaussian tables by maximum likelihood
                total = total + prior.log_prob(params[name].clamp(min=1e-300)).sum()
        return total

    def _log_joint(
        self, batch: Batch, params: dict[str, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """The EM objective: log p(x, known states | tables) + log p(tables)."""
        p = self.params if params is None else params
        b, offset = self._factors(batch, p)
        log_p = hmm_ops.forward_log_prob(b, p["init_probs"], p["trans_probs"], batch.mask, offset)
        return log_p.sum() + self._log_prior(p)

    def _fit_svi(self, batch: Batch, steps: int, lr: float, progress: bool) -> FitResult:
        """MAP by SVI: :func:`pyrobn.infer.map.map_estimate` on :meth:`model` (the states
        summed out by ``TraceEnum_ELBO``), its ``AutoDelta`` under the model's name."""
        from pyrobn.infer.map import map_estimate

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            estimate = map_estimate(
                self._model,
                batch,
                steps=steps,
                lr=lr,
                init=self.params,
                loss=TraceEnum_ELBO(max_plate_nesting=self.max_plate_nesting),
                optim=pyro.optim.Adam({"lr": lr}),
                seed=None,  # the fit's own seeded block (self._fitting) is already in place
                progress=progress,
                polish=0,
                prefix=unique_name(self._guide_prefix("map")),
            )
        for w in caught:  # point at the caller's fit, not at this module
            if issubclass(w.category, ConvergenceWarning):
                warnings.warn(
                    f"HiddenMarkovModel.fit(method='svi'): {w.message} "
                    "(fit_result_.converged is False)",
                    ConvergenceWarning,
                    stacklevel=3,
                )
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        self.set_params(**{name: estimate.values[name] for name in self._table_names()})
        self.__dict__["_autoguide"] = estimate.guide
        return FitResult.from_history(
            estimate.history,
            method="svi",
            objective_name="log_joint",
            converged=bool(estimate.converged),
        )

    @property
    def history_(self) -> list[float]:
        """Deprecated: use ``fit_result_``. The EM/count objective per iteration, or the
        SVI losses (−ELBO) per step, as before."""
        warnings.warn(
            "HiddenMarkovModel.history_ is deprecated; use fit_result_ (objective per "
            "iteration, higher is better, for every method)",
            DeprecationWarning,
            stacklevel=2,
        )
        result = self.fit_result_
        if result is None:
            return []
        if result.method == "svi" and result.history is not None:
            return list(result.history.losses)
        return list(result.objective)


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
