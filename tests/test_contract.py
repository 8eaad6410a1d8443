"""The estimator contract, checked for every model of the package (in the spirit of
scikit-learn's ``parametrize_with_checks``).

For each model: ``fit`` returns the model and records what it did in ``fit_result_`` (one
:class:`~pyrobn.infer.FitResult` type, objective higher-is-better); a seeded fit is
reproducible and leaves the caller's random generators, thread count and foreign Pyro
parameters untouched; save/load gives back every tensor bit for bit and the same answers;
``model`` and ``guide`` take the same arguments; the model describes its Bayesian network
(``graph()``, ``n_parameters``); a deleted model leaves nothing in Pyro's parameter store;
a bad constructor argument is a :class:`~pyrobn.errors.PyrobnError`.
"""

from __future__ import annotations

import gc
import inspect
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyro
import pytest
import torch
from pyro.infer import TraceEnum_ELBO

import pyrobn
from pyrobn.errors import PyrobnError
from pyrobn.graph import ModelGraph
from pyrobn.infer import FitResult, fit_svi
from pyrobn.models.base import PyrobnModule
from pyrobn.random import seeded

TEXT = "the cat sat on the mat and the dog sat on the log; the cat saw the dog. " * 4


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _gaussian(n: int, d: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, d, generator=_gen(seed))


def _levels(n: int, d: int, levels: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, levels, (n, d), generator=_gen(seed))


def _labels(n: int, k: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, k, (n,), generator=_gen(seed))


def _binary(n: int, d: int, seed: int = 0) -> torch.Tensor:
    return (torch.rand(n, d, generator=_gen(seed)) < 0.3).float()


@dataclass
class Case:
    """One model of the package: how to build it, its data and a small fit."""

    name: str
    build: Callable[[], PyrobnModule]
    data: Callable[[], tuple]
    fit: dict[str, Any] = field(default_factory=dict)
    bad: Callable[[], Any] | None = None  # a constructor call that must raise PyrobnError
    probe: Callable[[Any, tuple], Any] | None = None  # an answer that save/load must keep
    seeded: bool = True  # fit(seed=...) exists (counting models are deterministic)


def _log_prob_of_first(model: Any, data: tuple) -> Any:
    return model.log_prob(data[0])


CASES = [
    Case(
        "DiscreteBayesianNetwork",
        pyrobn.student_network,
        lambda: (pyrobn.student_network().sample(60, seed=3),),
        {"max_iter": 3, "restarts": 1},
        lambda: pyrobn.DiscreteBayesianNetwork({"a": {"table": [0.5, 0.6]}}),
        lambda m, d: m.query("x1", {"x4": 1}),
    ),
    Case(
        "GaussianMixture",
        lambda: pyrobn.GaussianMixture(2, dim=2),
        lambda: (_gaussian(80, 2),),
        {"method": "em", "max_iter": 4},
        lambda: pyrobn.GaussianMixture(0),
        _log_prob_of_first,
    ),
    Case(
        "MixtureDensityNetwork",
        lambda: pyrobn.MixtureDensityNetwork(1, 1, 2, hidden=(8,)),
        lambda: (_gaussian(40, 1), _gaussian(40, 1, seed=1)),
        {"steps": 4},
        lambda: pyrobn.MixtureDensityNetwork(1, 1, 0),
        lambda m, d: m.log_prob(d[0], d[1]),
    ),
    Case(
        "NaiveBayes",
        lambda: pyrobn.NaiveBayes("gaussian"),
        lambda: (_gaussian(40, 3), _labels(40, 2)),
        {},
        lambda: pyrobn.NaiveBayes("no-such-feature-kind"),
        lambda m, d: m.predict_proba(d[0]),
    ),
    Case(
        "MarkovChain",
        lambda: pyrobn.MarkovChain(order=1),
        lambda: (TEXT,),
        {},
        lambda: pyrobn.MarkovChain(order=-1),
        lambda m, d: m.log_prob("the cat sat"),
        seeded=False,
    ),
    Case(
        "HiddenMarkovModel",
        lambda: pyrobn.HiddenMarkovModel(2, n_symbols=3),
        lambda: (_levels(4, 12, 3),),
        {"max_iter": 3},
        lambda: pyrobn.HiddenMarkovModel(0, n_symbols=3),
        _log_prob_of_first,
    ),
    Case(
        "VAE",
        lambda: pyrobn.VAE(6, latent_dim=2, hidden=(8,)),
        lambda: (_binary(32, 6),),
        {"steps": 3, "batch_size": 16},
        lambda: pyrobn.VAE(6, latent_dim=0),
        lambda m, d: m.encode(d[0]),
    ),
    Case(
        "ConditionalVAE",
        lambda: pyrobn.ConditionalVAE(6, n_classes=2, latent_dim=2, hidden=(8,)),
        lambda: (_binary(32, 6), _labels(32, 2)),
        {"steps": 3, "batch_size": 16},
        lambda: pyrobn.ConditionalVAE(6, n_classes=0),
        lambda m, d: m.encode(d[0], d[1]),
    ),
    Case(
        "Autoencoder",
        lambda: pyrobn.Autoencoder(6, latent_dim=2, hidden=(8,)),
        lambda: (_gaussian(32, 6),),
        {"steps": 3, "batch_size": 16},
        lambda: pyrobn.Autoencoder(0),
        lambda m, d: m.encode(d[0]),
    ),
    Case(
        "AutoregressiveModel",
        lambda: pyrobn.AutoregressiveModel(5, "categorical", levels=3, hidden=8),
        lambda: (_levels(32, 5, 3),),
        {"steps": 3, "batch_size": 16, "progress": False},
        lambda: pyrobn.AutoregressiveModel(5, "categorical", levels=1),
        _log_prob_of_first,
    ),
    Case(
        "TextAutoregressiveModel",
        lambda: pyrobn.TextAutoregressiveModel(window=8, hidden=8, layers=1),
        lambda: (TEXT,),
        {"steps": 2},
        lambda: pyrobn.TextAutoregressiveModel(window=0),
        lambda m, d: m.log_prob("the cat sat"),
    ),
    Case(
        "NormalizingFlow",
        lambda: pyrobn.NormalizingFlow(2, n_transforms=1, hidden=(8,)),
        lambda: (_gaussian(32, 2),),
        {"steps": 3, "batch_size": 16, "progress": False},
        lambda: pyrobn.NormalizingFlow(2, n_transforms=0),
        _log_prob_of_first,
    ),
    Case(
        "DiffusionModel",
        lambda: pyrobn.DiffusionModel(4, levels=3, timesteps=8, hidden=(8,)),
        lambda: (_levels(32, 4, 3),),
        {"steps": 3, "batch_size": 16, "progress": False},
        lambda: pyrobn.DiffusionModel(4, levels=3, timesteps=0),
        lambda m, d: m.nll(d[0], seed=0),
    ),
    Case(
        "GAN",
        lambda: pyrobn.GAN(4, latent_dim=2, hidden=(8,)),
        lambda: (_gaussian(32, 4),),
        {"steps": 3, "batch_size": 16, "progress": False},
        lambda: pyrobn.GAN(4, latent_dim=0),
        lambda m, d: m.sample(5, seed=0),
    ),
    Case(
        "BayesianLinearRegression",
        lambda: pyrobn.BayesianLinearRegression(2),
        lambda: (_gaussian(30, 2), _gaussian(30, 1, seed=2).squeeze(-1)),
        {"steps": 5},
        lambda: pyrobn.BayesianLinearRegression(0),
        lambda m, d: m.predict(d[0]) if hasattr(m, "predict") else m.state_dict(),
    ),
]


def _exported_models() -> set[str]:
    return {
        name
        for name in pyrobn.__all__
        if inspect.isclass(getattr(pyrobn, name))
        and issubclass(getattr(pyrobn, name), PyrobnModule)
    }


def test_every_model_of_the_package_is_checked():
    assert _exported_models() == {c.name for c in CASES}


@pytest.fixture(params=CASES, ids=[c.name for c in CASES])
def case(request) -> Case:
    return request.param


def _fit(case: Case, model: PyrobnModule, data: tuple, seed: int = 0) -> Any:
    kwargs = dict(case.fit)
    if case.seeded:
        kwargs["seed"] = seed
    return model.fit(*data, **kwargs)


def _rng_states() -> tuple:
    return (
        random.getstate(),
        np.random.get_state()[1].copy(),  # noqa: NPY002 (the caller's global generator)
        torch.get_rng_state().clone(),
    )


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.shape == b.shape and np.array_equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and np.isnan(a):
        return isinstance(b, float) and np.isnan(b)
    return a == b


def test_fit_returns_the_model_and_records_one_result(case):
    model, data = case.build(), case.data()
    assert _fit(case, model, data) is model
    result = model.fit_result_
    assert isinstance(result, FitResult)
    assert result.method and result.objective_name
    assert result.n_iter >= 1 and np.isfinite(result.objective).all()
    assert result.wall_time >= 0 and isinstance(result.converged, bool)
    assert 0 <= result.best_restart < max(1, len(result.restarts))


def test_a_fit_has_no_side_effects(case):
    data = case.data()
    model = case.build()
    foreign = pyro.param("contract_foreign_parameter", torch.tensor([1.0, 2.0]))
    before = foreign.detach().clone()
    threads = torch.get_num_threads()
    states = _rng_states()
    try:
        _fit(case, model, data, seed=11)
        after = _rng_states()
        if case.seeded:  # a seeded fit draws from its own streams
            assert _same(states, after), "the caller's random generators changed"
        assert torch.get_num_threads() == threads
        store = pyro.get_param_store()
        assert "contract_foreign_parameter" in store
        assert torch.equal(store["contract_foreign_parameter"].detach(), before)
    finally:
        pyro.get_param_store().__delitem__("contract_foreign_parameter")


def test_a_seeded_fit_is_reproducible(case):
    """Two models built alike (networks are initialised at construction, as in torch.nn)
    and fitted with one seed end with the same state."""
    data = case.data()
    models = []
    for _ in range(2):
        with seeded(1):
            models.append(case.build())
        _fit(case, models[-1], data, seed=5)
    a, b = models[0].state_dict(), models[1].state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert _same(a[key], b[key]), f"{case.name}: {key} differs between two fits"


def test_save_and_load_lose_nothing(case, tmp_path):
    data = case.data()
    model = case.build()
    _fit(case, model, data)
    path = tmp_path / f"{case.name}.pt"
    model.save(path)
    loaded = type(model).load(path)
    assert type(loaded) is type(model)
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert _same(a[key], b[key]), key
    if case.probe is not None:
        model.eval(), loaded.eval()
        assert _same(case.probe(model, data), case.probe(loaded, data))


def test_model_and_guide_take_the_same_arguments(case):
    model = case.build()
    model_args = inspect.signature(model.model).parameters
    guide_args = inspect.signature(model.guide).parameters
    assert list(model_args.values()) == list(guide_args.values())


def test_the_model_describes_its_bayesian_network(case):
    model = case.build()
    _fit(case, model, case.data())
    graph = model.graph()
    assert isinstance(graph, ModelGraph)
    names = {node.name for node in graph.nodes}
    assert names and all(a in names and b in names for a, b in graph.edges)
    assert any(node.role == "observed" for node in graph.nodes)
    n = model.n_parameters
    assert isinstance(n, int) and n > 0


def test_a_deleted_model_leaves_no_parameter_behind(case):
    store = pyro.get_param_store()
    before = set(store.keys())
    model = case.build()
    _fit(case, model, case.data())
    del model
    gc.collect()
    assert set(store.keys()) <= before, sorted(set(store.keys()) - before)


def _tensor_attributes(module: torch.nn.Module) -> list[str]:
    """Tensors held as plain attributes: ``.to(device)`` would leave them behind."""
    found = []
    for prefix, sub in module.named_modules():
        registered = set(sub._parameters) | set(sub._buffers)
        for name, value in vars(sub).items():
            if isinstance(value, torch.Tensor) and name not in registered:
                found.append(f"{prefix}.{name}" if prefix else name)
    return found


def test_every_tensor_moves_with_the_model(case):
    """Every tensor of a fitted model is a parameter or a buffer, so ``.to(device)``
    moves all of them (checked on the ``meta`` device, which every machine has)."""
    model = case.build()
    _fit(case, model, case.data())
    assert not _tensor_attributes(model), _tensor_attributes(model)
    moved = model.to("meta")
    assert all(t.device.type == "meta" for t in [*moved.parameters(), *moved.buffers()])


def _enum_loss(model: Any, *args: Any) -> float:
    elbo = TraceEnum_ELBO(max_plate_nesting=getattr(model, "max_plate_nesting", 1))
    return elbo.loss(model.model, model.guide, *args)


EXACT = {
    # name: (Pyro arguments of model/guide, the log-likelihood they must give, loss scale)
    "DiscreteBayesianNetwork": (
        lambda m, d: ({k: v for k, v in d[0].items() if k != "x1"},),  # x1 summed out
        lambda m, d: m.log_prob({k: v for k, v in d[0].items() if k != "x1"}).sum(),
        lambda d: 1.0,
    ),
    "GaussianMixture": (
        lambda m, d: (d[0],),
        lambda m, d: m.log_prob(d[0]).sum(),
        lambda d: float(len(d[0])),  # the mixture's ELBO is per row
    ),
    "HiddenMarkovModel": (  # the tables are the guide's point mass: their prior counts
        lambda m, d: (m._as_batch(d[0]),),
        lambda m, d: (
            m.log_prob(d[0]).sum()
            + sum(p.log_prob(m.params[k]).sum() for k, p in m._priors().items())
        ),
        lambda d: 1.0,
    ),
    "AutoregressiveModel": (
        lambda m, d: (m._check_x(d[0]),),
        lambda m, d: m.log_prob(d[0]).sum(),
        lambda d: 1.0,
    ),
    "NormalizingFlow": (
        lambda m, d: (m._check_x(d[0]),),
        lambda m, d: m.log_prob(d[0]).sum(),
        lambda d: 1.0,
    ),
}


@pytest.mark.parametrize("name", sorted(EXACT))
def test_an_exact_model_s_enumerated_elbo_is_its_log_likelihood(name):
    """No continuous latent: TraceEnum_ELBO sums the discrete ones out exactly, so its loss
    is -log p(data) (Pyro's program and the model's own log_prob agree)."""
    case = next(c for c in CASES if c.name == name)
    model, data = case.build(), case.data()
    _fit(case, model, data)
    model.eval()
    args, log_lik, scale = EXACT[name]
    loss = _enum_loss(model, *args(model, data)) * scale(data)
    expected = -float(log_lik(model, data))
    assert abs(loss - expected) <= 1e-5 * max(1.0, abs(expected)), (loss, expected)


SVI_ARGS = {
    "DiscreteBayesianNetwork": lambda m, d: (d[0],),
    "GaussianMixture": lambda m, d: (d[0],),
    "MixtureDensityNetwork": lambda m, d: (d[0], d[1]),
    "NaiveBayes": lambda m, d: (d[0], d[1]),
    "HiddenMarkovModel": lambda m, d: (m._as_batch(d[0]),),
    "VAE": lambda m, d: (d[0],),
    "ConditionalVAE": lambda m, d: (d[0], d[1]),
    "Autoencoder": lambda m, d: (d[0],),
    "AutoregressiveModel": lambda m, d: (m._check_x(d[0]),),
    "NormalizingFlow": lambda m, d: (m._check_x(d[0]),),
    "DiffusionModel": lambda m, d: (m._check_x(d[0]),),
    "BayesianLinearRegression": lambda m, d: (d[0], d[1]),
}
#: models whose Pyro pair is not trained by one ELBO step, and why
NO_SVI_STEP = {
    "MarkovChain": "counts: its pair takes the count rows the corpus gives, no free site",
    "TextAutoregressiveModel": "its Pyro pair is the inner AutoregressiveModel's (checked)",
    "GAN": "a two-player game: fit_svi runs it with AdversarialLoss, not an ELBO",
}


def test_every_model_is_checked_for_an_svi_step():
    assert set(SVI_ARGS) | set(NO_SVI_STEP) == {c.name for c in CASES}


@pytest.mark.parametrize("name", sorted(SVI_ARGS))
def test_one_fit_svi_step_runs_on_the_model_and_guide(name):
    case = next(c for c in CASES if c.name == name)
    model, data = case.build(), case.data()
    _fit(case, model, data)
    loss = TraceEnum_ELBO(max_plate_nesting=getattr(model, "max_plate_nesting", 1))
    history = fit_svi(
        model.model, model.guide, *SVI_ARGS[name](model, data), steps=1, loss=loss,
        progress=False, seed=0,
    )  # fmt: skip
    assert len(history.losses) == 1 and np.isfinite(history.losses[0])


def test_a_bad_constructor_argument_is_a_pyrobn_error(case):
    assert case.bad is not None
    with pytest.raises(PyrobnError):
        case.bad()
