"""The base contract: files that cannot run code, loads that validate, released parameters,
fits without side effects."""

from __future__ import annotations

import gc
import os
import pickle
import random

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.nn import PyroParam

from pyrobn.errors import CheckpointError, InvalidDistributionError
from pyrobn.models.base import PyrobnModule
from pyrobn.validation import check_distribution


class Coin(PyrobnModule):
    """A minimal model: p(x) = Bernoulli(p), p a buffer validated like a distribution."""

    def __init__(self, p: float = 0.5, learn: bool = False) -> None:
        super().__init__(p=p, learn=learn)
        probs = torch.tensor([1 - p, p], dtype=torch.float64)
        check_distribution(probs, "p")
        self.register_buffer("probs", probs)
        if learn:
            self.logit = PyroParam(torch.zeros(3))

    def model(self, x=None):
        if self.config["learn"]:
            pyro.factor("prior", -self.logit.square().sum())  # registers the param with Pyro
        with pyro.plate("data", 3):
            pyro.sample("x", dist.Categorical(self.probs), obs=x)

    def guide(self, x=None):
        pass

    def _check_state(self) -> None:
        super()._check_state()
        check_distribution(self.probs, "probs")


class Payload:
    """Unpickling this runs code: it creates a file named by its argument."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_save_load_round_trip(tmp_path):
    coin = Coin(0.3)
    coin.save(tmp_path / "c.pt")
    again = Coin.load(tmp_path / "c.pt")
    assert torch.equal(again.probs, coin.probs) and again.config == coin.config


def test_a_crafted_file_does_not_run_its_payload(tmp_path):
    marker = tmp_path / "pwned"
    state = {
        "format": "pyrobn.model",
        "version": 2,
        "class": f"{Coin.__module__}.Coin",
        "config": {"p": 0.5},
        "state_dict": Payload(str(marker)),
    }
    with open(tmp_path / "evil.pt", "wb") as f:
        pickle.dump(state, f)
    torch.save(state, tmp_path / "evil_torch.pt")
    for name in ("evil.pt", "evil_torch.pt"):
        with pytest.raises(CheckpointError, match="refused without running"):
            Coin.load(tmp_path / name)
    assert not marker.exists()


def test_corrupt_truncated_foreign_and_inconsistent_files(tmp_path):
    Coin(0.3).save(tmp_path / "ok.pt")
    raw = (tmp_path / "ok.pt").read_bytes()
    (tmp_path / "truncated.pt").write_bytes(raw[: len(raw) // 2])
    (tmp_path / "garbage.pt").write_bytes(os.urandom(300))
    (tmp_path / "empty.pt").write_bytes(b"")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    for name in ("truncated.pt", "garbage.pt", "empty.pt", "foreign.pt", "list.pt", "none.pt"):
        with pytest.raises(CheckpointError):
            Coin.load(tmp_path / name)
    # a table that is no distribution: the constructor's validation runs on the state too
    state = torch.load(tmp_path / "ok.pt", weights_only=True)
    state["state_dict"]["probs"] = torch.tensor([2.0, 13.0], dtype=torch.float64)
    torch.save(state, tmp_path / "rows.pt")
    with pytest.raises(CheckpointError, match="sums to 15") as info:
        Coin.load(tmp_path / "rows.pt")
    assert isinstance(info.value.__cause__, InvalidDistributionError)
    # a bad configuration, another class, a missing tensor, another version
    for change, match in (
        ({"config": {"p": 7.0}}, "invalid configuration"),
        ({"config": {"q": 1}}, "invalid configuration"),
        ({"class": "pyrobn.models.hmm.HiddenMarkovModel"}, "not a"),
        ({"state_dict": {}}, "does not fit"),
        ({"version": 1}, "version"),
    ):
        bad = {**torch.load(tmp_path / "ok.pt", weights_only=True), **change}
        torch.save(bad, tmp_path / "bad.pt")
        with pytest.raises(CheckpointError, match=match):
            Coin.load(tmp_path / "bad.pt")


def test_a_deleted_model_releases_its_parameters():
    store = pyro.get_param_store()
    pyro.param("users_own", torch.ones(2))
    coins = [Coin(learn=True) for _ in range(5)]
    for c in coins:
        c.model()
    names = [f"{c._pyro_name}.logit" for c in coins]
    assert all(name in store.keys() for name in names)
    del coins, c
    gc.collect()
    assert not any(name in store.keys() for name in names)
    assert "users_own" in store.keys()


def test_fitting_block_gives_random_states_threads_and_grads_back():
    coin = Coin(learn=True)
    before = (random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state())  # noqa: NPY002
    threads = torch.get_num_threads()
    with coin._fitting(seed=3):
        torch.rand(3)
        np.random.rand()  # noqa: NPY002
        torch.set_num_threads(threads + 1)
        coin.logit_unconstrained.sum().backward()
    assert torch.get_num_threads() == threads
    after = (random.getstate(), np.random.get_state()[1], torch.get_rng_state())  # noqa: NPY002
    assert before[0] == after[0] and np.array_equal(before[1], after[1])
    assert torch.equal(before[2], after[2])
    assert all(p.grad is None for p in coin.parameters())
