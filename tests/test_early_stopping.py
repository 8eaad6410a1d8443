"""pyrobn.infer.early_stopping: SVI in chunks, the best validation state kept, patience."""

from __future__ import annotations

import itertools

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.nn import PyroModule, PyroParam

from pyrobn.errors import ConfigurationError
from pyrobn.infer import FusedAdam
from pyrobn.infer.early_stopping import fit_svi_validated

_names = itertools.count()


class Location(PyroModule):
    """x_i ~ N(loc, 1): one trained parameter (a unique Pyro name), an empty guide."""

    def __init__(self) -> None:
        super().__init__(f"test_early_stopping.Location_{next(_names)}")
        self.loc = PyroParam(torch.tensor(0.0))

    def release(self) -> None:
        """Remove this module's parameters from the Pyro param store (and only those)."""
        store = pyro.get_param_store()
        for name in [k for k in store.keys() if k.startswith(f"{self._pyro_name}.")]:
            del store[name]

    def forward(self, x: torch.Tensor) -> None:
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(self.loc, 1.0), obs=x)


def empty_guide(x: torch.Tensor) -> None:
    pass


def run(scores, steps=10, chunk=2, patience=None):
    """fit_svi_validated with scripted validation scores; the parameter at each score."""
    module, seen, modes = Location(), [], []
    x = torch.full((20,), 3.0)

    def validation_nll() -> float:
        seen.append(float(module.loc.detach()))
        modes.append(module.training)
        return scores[len(seen) - 1]

    module.train()
    try:
        history, curve = fit_svi_validated(
            module, module, empty_guide, x, optim=FusedAdam(lr=0.1), steps=steps,
            chunk=chunk, validation_nll=validation_nll, patience=patience, progress=False,
        )  # fmt: skip
    finally:
        module.release()
    return module, history, curve, seen, modes


def test_the_best_evaluation_state_is_restored_and_every_chunk_is_scored():
    module, history, curve, seen, modes = run([3.0, 1.0, 2.0, 4.0, 5.0])
    assert curve == [3.0, 1.0, 2.0, 4.0, 5.0] and history.steps == len(history.losses) == 10
    assert len(set(seen)) == 5  # training moved the parameter between evaluations
    assert float(module.loc.detach()) == seen[1]  # the state of the best (second) evaluation
    assert modes == [False] * 5 and module.training  # scored in eval mode, then back


def test_patience_stops_after_that_many_evaluations_without_improvement():
    module, history, curve, seen, _ = run([3.0, 1.0, 2.0, 4.0, 0.5, 0.1], steps=12, patience=2)
    assert curve == [3.0, 1.0, 2.0, 4.0] and history.steps == 8
    assert float(module.loc.detach()) == seen[1]


def test_a_last_short_chunk_and_no_validation():
    _, history, curve, _, _ = run([2.0, 1.0, 0.5], steps=7, chunk=3)
    assert curve == [2.0, 1.0, 0.5] and history.steps == 7
    module = Location()
    try:
        history, curve = fit_svi_validated(
            module, module, empty_guide, torch.ones(4), optim=FusedAdam(lr=0.1), steps=5,
            chunk=2, progress=False,
        )  # fmt: skip
    finally:
        module.release()
    assert curve == [] and history.steps == 5


@pytest.mark.parametrize("bad", [{"chunk": 0}, {"patience": 0}, {"patience": 1.5}])
def test_bad_chunk_or_patience_raises(bad):
    kwargs = {"chunk": 2, "patience": None, **bad}
    with pytest.raises(ConfigurationError, match=next(iter(bad))):
        run([1.0] * 5, **kwargs)
