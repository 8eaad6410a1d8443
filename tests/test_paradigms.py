"""pyrobn.paradigms: the swiss-roll configurations shared by tutorial 17 and the benchmark."""

from __future__ import annotations

import pytest
import torch
from common import assert_close

import pyrobn
from pyrobn import paradigms
from pyrobn.errors import ConfigurationError


def test_the_split_is_the_swiss_rolls_spiral_and_leaves_the_callers_rng_alone():
    state = torch.random.get_rng_state()
    train, held = paradigms.swiss_roll_split(smoke=True)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert train.shape == (paradigms.SMOKE_SIZES[0], 2)
    assert held.shape == (paradigms.SMOKE_SIZES[1], 2)
    roll, _ = pyrobn.datasets.swiss_roll(paradigms.SMOKE_SIZES[0], noise=0.3, seed=0)
    assert torch.equal(train, roll[:, [0, 2]])
    assert not torch.equal(train[: len(held)], held)  # two independent draws
    again, _ = paradigms.swiss_roll_split(smoke=True)
    assert torch.equal(train, again)


@pytest.mark.parametrize("name", paradigms.PARADIGMS[1:])
def test_build_states_each_paradigms_likelihood_and_is_seeded(name):
    state = torch.random.get_rng_state()
    model = paradigms.build(name, smoke=True, seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert model.nll_kind == paradigms.STATED_NLL_KINDS[name]
    same = paradigms.build(name, smoke=True, seed=3)
    other = paradigms.build(name, smoke=True, seed=4)
    a, b, c = (dict(m.named_parameters()) for m in (model, same, other))
    assert a and all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_the_kde_is_exact_under_the_harness_protocol():
    train, held = paradigms.swiss_roll_split(smoke=True)
    model = paradigms.fit("KDE", train, smoke=True)
    assert model.nll_kind == paradigms.STATED_NLL_KINDS["KDE"] == "exact"
    kde = pyrobn.KDE(train, "cv", seed=0)
    assert_close(model.nll(held), -kde.log_prob(held), rtol=1e-6)
    assert_close(
        pyrobn.evaluation.nll_score(model, held).nats, -kde.log_prob(held).mean(), rtol=1e-6
    )
    draws = model.sample(50, seed=1)
    assert draws.shape == (50, 2) and torch.equal(draws, model.sample(50, seed=1))
    assert model.graph() is not None
    with pytest.raises(ConfigurationError, match="unconditional"):
        model.sample(5, y=1)
    with pytest.raises(ConfigurationError, match="unconditional"):
        model.nll(held, 1)


def test_fit_trains_a_paradigm_with_the_stated_number_of_steps():
    train, _ = paradigms.swiss_roll_split(smoke=True)
    model = paradigms.fit("GAN", train, smoke=True, seed=0)
    assert model.fit_result_.n_iter == paradigms.SMOKE_STEPS
    assert set(paradigms.STEPS) == set(paradigms.PARADIGMS[1:])
    assert model.sample(10, seed=0).shape == (10, 2)


def test_unknown_paradigms_are_named():
    with pytest.raises(ConfigurationError, match="'energy'"):
        paradigms.fit("energy", torch.zeros(5, 2))
    with pytest.raises(ConfigurationError, match="the KDE is built by fit"):
        paradigms.build("KDE")
