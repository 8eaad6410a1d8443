"""Exact queries of :class:`~pyrobn.models.hmm.HiddenMarkovModel` on the kernels of
:mod:`pyrobn.infer.hmm_ops`, and ancestral sampling of eq. 12.

The emission factors b_t(k) = p(x_t | z_t = k) (1 on missing and padded steps; times
1[z_t = state] where a state is known) feed the forward algorithm (``log_prob``: log p(x)),
forward-backward (``posterior_marginals`` = ``predict_proba``: p(z_t | x)) and max-product
(``viterbi``, ``predict``: argmax_z p(z | x)).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from pyrobn.errors import ZeroProbabilityEvidence
from pyrobn.infer import hmm_ops
from pyrobn.models.hmm.data import Batch
from pyrobn.random import generator
from pyrobn.validation import check_allocation, check_int

__all__ = ["Queries"]


class Queries:
    """The :class:`~pyrobn.models.hmm.HiddenMarkovModel` methods that answer queries with
    the current tables: emission factors, ``log_prob``, ``posterior_marginals`` /
    ``predict_proba``, ``viterbi`` / ``predict``, and ``sample``."""

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

        >>> hmm = pyrobn.HiddenMarkovModel(2, "gaussian", n_features=1)
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


def _lookup(table: torch.Tensor, symbols: torch.Tensor) -> torch.Tensor:
    """Rows of ``table`` (V, K) at integer ``symbols`` (...): (..., K) (``index_select`` on
    the flattened symbols is several times faster than advanced indexing)."""
    rows = table.contiguous().index_select(0, symbols.reshape(-1))
    return rows.reshape(*symbols.shape, table.shape[1])
