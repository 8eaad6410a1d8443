"""The data layout of :class:`~pyrobn.models.hmm.HiddenMarkovModel` (the rule in the
package docstring, :mod:`pyrobn.models.hmm`): observations, ``lengths``, ``mask`` and known
``states`` are validated at the boundary, raising pyrobn errors that name the fault, and
padded into a :class:`Batch` on the model's device, the one input of the kernels.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from pyrobn.errors import ConfigurationError, OutOfSupportError, ShapeError
from pyrobn.validation import (
    check_allocation,
    check_finite,
    check_integers_in_range,
    check_shape,
)

__all__ = ["Batch", "DataLayout"]

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


class DataLayout:
    """The :class:`~pyrobn.models.hmm.HiddenMarkovModel` methods that read its input:
    observations (with ``lengths``/``mask`` and known ``states``) into a :class:`Batch`, a
    size guard before the (N, T, K) arrays of a query, and results of one sequence
    unbatched."""

    def _as_batch(
        self,
        observations: Any,
        lengths: Any = None,
        mask: Any = None,
        states: Any = None,
    ) -> Batch:
        """Validate and pad the observations (layout: the docstring of
        :mod:`pyrobn.models.hmm`); raise pyrobn errors naming the fault."""
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

    def _unbatch(self, value: torch.Tensor, batch: Batch) -> torch.Tensor:
        return value[0] if batch.single else value
