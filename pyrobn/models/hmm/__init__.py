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

The package, one job a file (:class:`HiddenMarkovModel` is defined here, its constructor,
parameter tables and graph, from the parts beside it):

* :mod:`pyrobn.models.hmm.data`: the data layout above, validated and padded into a
  :class:`~pyrobn.models.hmm.data.Batch` (observations, lengths, masks, known states);
* :mod:`pyrobn.models.hmm.queries`: the emission factors, the exact queries on the kernels
  of :mod:`pyrobn.infer.hmm_ops`, and ancestral sampling;
* :mod:`pyrobn.models.hmm.learning`: ``fit`` (counts, Baum-Welch through
  :func:`pyrobn.infer.em.run_em`, SVI/MAP) and :func:`permutation_match`;
* :mod:`pyrobn.models.hmm.program`: eq. 12 as a Pyro model/guide pair, ``infer_discrete``.
"""

from __future__ import annotations

from typing import Any

import torch

from pyrobn.errors import ConfigurationError
from pyrobn.graph import GraphNode, ModelGraph
from pyrobn.models.hmm.data import Batch as Batch  # the prepared observations, as before
from pyrobn.models.hmm.data import DataLayout
from pyrobn.models.hmm.learning import Learning, permutation_match
from pyrobn.models.hmm.program import PyroProgram
from pyrobn.models.hmm.queries import Queries
from pyrobn.validation import (
    check_allocation,
    check_distribution,
    check_finite,
    check_int,
    check_positive,
    check_shape,
    to_real_tensor,
)

__all__ = ["HiddenMarkovModel", "permutation_match"]

_EMISSIONS = ("categorical", "gaussian")


class HiddenMarkovModel(DataLayout, Queries, Learning, PyroProgram):
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
        emitting the observed x_t, drawn for ``steps`` time steps inside the data plate,
        time running left to right (z_t at (t, 1) above x_t at (t, 0)).

        >>> g = HiddenMarkovModel(2, n_symbols=3).graph(3)
        >>> g.parents("x_2"), g.d_separated("x_1", "x_3", given=["z_2"])
        (('z_2',), True)
        >>> g.positions["z_2"], g.positions["x_2"]
        ((2.0, 1.0), (2.0, 0.0))
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
        positions = {}
        for t in range(1, steps + 1):
            positions[f"z_{t}"], positions[f"x_{t}"] = (t, 1), (t, 0)
        return ModelGraph(
            nodes,
            edges,
            plates={"data": (members, "N")},
            title="HMM (eq. 12, Figura 5)",
            positions=positions,
        )
