"""Seeding without side effects: ``seeded``, ``forked``, ``generator``, ``set_seed``."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pyrobn.errors import ConfigurationError
from pyrobn.random import forked, generator, seeded, set_seed


def _states():
    return (
        random.getstate(),
        np.random.get_state()[1].copy(),  # noqa: NPY002
        torch.get_rng_state().clone(),
    )


def _same(a, b) -> bool:
    return a[0] == b[0] and np.array_equal(a[1], b[1]) and torch.equal(a[2], b[2])


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32))
def test_seeded_gives_the_callers_states_back_and_repeats(seed):
    before = _states()
    with seeded(seed):
        first = (random.random(), np.random.rand(), torch.rand(3))  # noqa: NPY002
    assert _same(before, _states())
    with seeded(seed):
        second = (random.random(), np.random.rand(), torch.rand(3))  # noqa: NPY002
    assert first[0] == second[0] and first[1] == second[1]
    assert torch.equal(first[2], second[2])


def test_seeded_restores_on_an_exception_and_none_draws_from_the_caller():
    before = _states()
    with pytest.raises(RuntimeError), seeded(3):
        torch.rand(2)
        raise RuntimeError("boom")
    assert _same(before, _states())
    with seeded(None):
        torch.rand(1)
    assert not _same(before, _states())  # unseeded: consumed the caller's stream


def test_forked_keeps_a_reseed_inside():
    before = _states()
    with forked():
        set_seed(123)
        torch.rand(5)
    assert _same(before, _states())


def test_generator_is_local_and_reproducible():
    before = _states()
    a = torch.rand(4, generator=generator(7))
    b = torch.rand(4, generator=generator(7))
    assert torch.equal(a, b)
    assert _same(before, _states())


@pytest.mark.parametrize("bad", [-1, 1.5, True, "3", None])
def test_bad_seeds_are_named(bad):
    if bad is None:
        with seeded(None):  # None is allowed: no seeding
            pass
        return
    with pytest.raises(ConfigurationError, match="seed"):
        with seeded(bad):
            pass
    with pytest.raises(ConfigurationError, match="seed"):
        generator(bad)
