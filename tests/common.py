"""What the tests share: one closeness assertion and brute-force oracles."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["assert_close", "assert_no_step_twice", "brute_force_joint", "enumerate_states"]


def assert_close(
    actual: Any, expected: Any, *, rtol: float = 1e-7, atol: float = 1e-9, msg: str = ""
) -> None:
    """``actual`` equals ``expected`` elementwise within ``atol + rtol * |expected|``.

    Tensors, arrays and numbers of any mix are compared in float64 after broadcasting is
    refused: the shapes must agree. The message names the worst element.
    """
    a = torch.as_tensor(np.asarray(_plain(actual)), dtype=torch.float64)
    e = torch.as_tensor(np.asarray(_plain(expected)), dtype=torch.float64)
    assert a.shape == e.shape, f"{msg} shapes differ: {tuple(a.shape)} vs {tuple(e.shape)}"
    same_inf = torch.isinf(a) & torch.isinf(e) & (torch.sign(a) == torch.sign(e))
    diff = torch.where(same_inf, torch.zeros_like(a), (a - e).abs())
    bound = atol + rtol * e.abs()
    bad = ~(diff <= torch.where(same_inf, torch.ones_like(bound), bound))
    if bool(bad.any()):
        index = tuple(int(i) for i in bad.nonzero()[0].tolist())
        raise AssertionError(
            f"{msg} {int(bad.sum())} of {a.numel()} elements differ; worst |diff| = "
            f"{float(diff[bad].max()):.3g}; at {index}: {float(a[index])!r} vs "
            f"{float(e[index])!r} (rtol {rtol}, atol {atol})"
        )


def _plain(x: Any) -> Any:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().double().numpy()
    return x


def enumerate_states(cards: Sequence[int]) -> list[tuple[int, ...]]:
    """Every joint assignment of variables with the given cardinalities (row-major)."""
    return list(itertools.product(*(range(c) for c in cards)))


def brute_force_joint(
    cards: Sequence[int], log_factor: Callable[[tuple[int, ...]], float]
) -> torch.Tensor:
    """The normalised joint table p(x) ∝ exp(log_factor(x)) by enumeration (float64)."""
    table = torch.tensor([log_factor(s) for s in enumerate_states(cards)], dtype=torch.float64)
    return torch.softmax(table, 0).reshape(*cards)


def assert_no_step_twice(plan: Any) -> None:
    """No two steps of a compiled plan walk the same inputs into the same output (the
    encoding of each step but the slot it writes): a product asked for again is read."""
    program = plan.program.tolist()
    ends = [*plan.starts.tolist()[1:], len(program)]
    seen = set()
    for start, end in zip(plan.starts.tolist(), ends):
        step = tuple(program[start : start + 2] + program[start + 3 : end])
        assert step not in seen, f"a step is walked twice: {step}"
        seen.add(step)
