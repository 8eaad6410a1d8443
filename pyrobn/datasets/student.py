"""Samples of the notes' student network (2.1.1, eq. 1), with hidden or missing entries."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from pyrobn.errors import ConfigurationError
from pyrobn.validation import check_allocation, check_int

__all__ = ["student_samples"]


def student_samples(
    n: int,
    seed: int = 0,
    hidden: str | Sequence[str] | None = None,
    missing: float = 0.0,
) -> dict[str, torch.Tensor]:
    """``n`` ancestral draws of (x1, x2, x3, x4) from :func:`pyrobn.student_network`.

    Returns {name: LongTensor(n)} with states 0 = no, 1 = yes; -1 marks a missing entry.
    ``hidden`` names variables whose every entry is set to -1 (e.g. ``"x1"``: whether the
    student studied is never seen); ``missing`` is the fraction of the other entries
    removed completely at random (seeded too).

    >>> data = student_samples(5000, seed=0, hidden="x1")
    >>> sorted(data), int((data["x1"] == -1).sum())
    (['x1', 'x2', 'x3', 'x4'], 5000)
    """
    from pyrobn.models.bayesnet import student_network

    n = check_int(n, "n")
    seed = check_int(seed, "seed", low=0)
    check_allocation(8 * n, torch.int64, f"student_samples({n})")
    if isinstance(missing, bool) or not isinstance(missing, int | float) or not 0 <= missing < 1:
        raise ConfigurationError(f"missing must be a fraction in [0, 1), got {missing!r}")
    net = student_network(device="cpu")
    data = net.sample(n, seed=seed)
    if hidden is not None and not isinstance(hidden, str | list | tuple):
        raise ConfigurationError(
            f"hidden must be a variable name or a list of names, got {hidden!r}"
        )
    names = [hidden] if isinstance(hidden, str) else list(hidden or [])
    for name in names:
        if not isinstance(name, str) or name not in data:
            raise ConfigurationError(f"hidden names {name!r}; the variables are {list(data)}")
        data[name] = torch.full_like(data[name], -1)
    if missing > 0:
        gen = torch.Generator().manual_seed(int(seed) + 1)
        for name in data:
            if name not in names:
                drop = torch.rand(n, generator=gen) < missing
                data[name] = torch.where(drop, torch.full_like(data[name], -1), data[name])
    return data
