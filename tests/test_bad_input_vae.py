"""Bad input to every public entry point of the VAE area (VAE, ConditionalVAE, Autoencoder,
the latent tools, the estimator spread, the swiss roll) raises an error from
:mod:`pyrobn.errors`, never a raw TypeError/IndexError/RuntimeError, never a NaN result
(hypothesis property tests).

Each example counts as one input tried for its entry point; the table of inputs tried and
clear pyrobn errors is written to ``$PYROBN_BAD_INPUT_REPORT`` when that is set.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from bad_input import BadInputTally, not_positive_int
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pyrobn
from pyrobn.models.vae import estimator_spread

TALLY = BadInputTally()
expect_error = TALLY.expect_error
SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
D, L, K = 6, 2, 3  # data_dim, latent_dim, classes of the models below


@pytest.fixture(scope="module", autouse=True)
def _report():
    yield
    TALLY.report()


# ----------------------------------------------------------------------------- models
def _models() -> dict[str, Any]:
    """Small models, one per likelihood family (rebuilt per test: the store is cleared)."""
    g = torch.Generator().manual_seed(0)
    with pyrobn.random.seeded(0):
        return {
            "bernoulli": pyrobn.VAE(D, latent_dim=L, hidden=(4,)),
            "normal": pyrobn.VAE(D, latent_dim=L, hidden=(4,), likelihood="normal"),
            "categorical": pyrobn.VAE(
                D, latent_dim=L, hidden=(4,), likelihood="categorical", levels=5
            ),
            "cvae": pyrobn.ConditionalVAE(D, n_classes=K, latent_dim=L, hidden=(4,)),
            "ae": pyrobn.Autoencoder(D, latent_dim=L, hidden=(4,)),
            "x": torch.rand(8, D, generator=g).round(),
            "y": torch.arange(8) % K,
        }


# ----------------------------------------------------------------------------- strategies


def not_a_seed():
    """Values that are not an integer >= 0 (None is a valid "no seed")."""
    return st.one_of(
        st.integers(max_value=-1),
        st.floats(allow_nan=True, allow_infinity=True),
        st.booleans(),
        st.text(max_size=3),
        st.complex_numbers(max_magnitude=10),
    )


def not_positive_real():
    return st.one_of(
        st.floats(max_value=0.0),
        st.just(math.nan),
        st.just(math.inf),
        st.booleans(),
        st.text(max_size=3),
        st.complex_numbers(min_magnitude=0.1, max_magnitude=10).filter(lambda z: z.imag != 0),
    )


def not_a_name(choices: tuple[str, ...]):
    return st.one_of(
        st.text(max_size=8).filter(lambda s: s not in choices),
        st.integers(),
        st.none(),
        st.just(list(choices)),
    )


def huge():
    """Valid-looking sizes past the memory budget."""
    return st.integers(min_value=10**12, max_value=10**18)


def bad_matrix(cols: int, kind: str = "real"):
    """(n, cols) data gone wrong: NaN/inf, wrong shapes, empty, strings, complex, ragged;
    for ``kind="unit"`` values outside [0, 1], for ``"levels"`` non-integers and levels
    outside {0, ..., 4}."""
    good = np.full((4, cols), 0.0)

    def poke(value: float, i: int, j: int) -> np.ndarray:
        out = good.copy()
        out[i % 4, j % cols] = value
        return out

    index = st.integers(0, 10)
    options = [
        st.builds(poke, st.sampled_from([math.nan, math.inf, -math.inf]), index, index),
        st.integers(0, 5)
        .filter(lambda c: c != cols)
        .map(lambda c: np.zeros((3, c))),  # wrong width
        st.just(np.zeros((0, cols))),  # no rows
        st.just(np.zeros(cols + 1)),  # a vector of the wrong length
        st.just(np.zeros((2, 3, cols + 1))),
        st.just("x"),
        st.just([[0.0] * cols, [0.0] * (cols - 1)]),  # ragged
        st.just(np.zeros((2, cols), dtype=complex)),
        st.just(np.array([["a"] * cols])),
    ]
    if kind == "unit":
        options.append(
            st.builds(poke, st.floats(1.0001, 1e6) | st.floats(-1e6, -1e-4), index, index)
        )
    if kind == "levels":
        options.append(
            st.builds(poke, st.floats(-1e3, 1e3).filter(lambda v: v != round(v)), index, index)
        )
        options.append(
            st.builds(poke, st.integers(5, 10**6) | st.integers(-(10**6), -1), index, index)
        )
    return st.one_of(*options)


def bad_labels(n: int, classes: int):
    return st.one_of(
        st.integers(classes, 10**9).map(lambda c: [c] * n),
        st.integers(-(10**9), -1).map(lambda c: [c] * n),
        st.just([0.5] * n),
        st.just([math.nan] * n),
        st.just([True] * n),
        st.just(torch.zeros(n, dtype=torch.bool)),
        st.just(list(range(n + 1))),  # wrong length
        st.just(np.zeros((n, 2))),
        st.just("a" * n),
        st.just(np.zeros(n, dtype=complex)),
        st.integers(classes, 10**20),  # one out-of-range int
        st.integers(-(10**20), -1),
    )


# ----------------------------------------------------------------------------- constructors
@SETTINGS
@given(
    arg=st.sampled_from(["data_dim", "latent_dim"]),
    value=st.one_of(not_positive_int(), huge()),
)
def test_constructor_sizes(arg, value):
    for cls, extra in (
        (pyrobn.VAE, {}),
        (pyrobn.ConditionalVAE, {"n_classes": 3}),
        (pyrobn.Autoencoder, {}),
    ):
        kwargs = {"data_dim": 6, "hidden": (4,), **extra, arg: value}
        expect_error(f"{cls.__name__}({arg}=)", lambda: cls(**kwargs))  # noqa: B023


@SETTINGS
@given(
    hidden=st.one_of(
        st.lists(not_positive_int(), min_size=1, max_size=3),
        st.lists(huge(), min_size=2, max_size=2),
        st.integers(),
        st.text(min_size=1, max_size=3),
        st.none(),
    )
)
def test_constructor_hidden(hidden):
    for cls, extra in (
        (pyrobn.VAE, {}),
        (pyrobn.ConditionalVAE, {"n_classes": 3}),
        (pyrobn.Autoencoder, {}),
    ):
        expect_error(
            f"{cls.__name__}(hidden=)",
            lambda: cls(6, hidden=hidden, **extra),  # noqa: B023
        )


@SETTINGS
@given(
    case=st.one_of(
        st.builds(lambda v: {"likelihood": v}, not_a_name(pyrobn.models.vae.LIKELIHOODS)),
        st.builds(lambda v: {"activation": v}, not_a_name(("relu", "tanh", "elu"))),
        st.builds(lambda v: {"likelihood": "normal", "obs_scale": v}, not_positive_real()),
        st.builds(
            lambda lik, v: {"likelihood": lik, "obs_scale": v},
            st.sampled_from(["bernoulli", "categorical", "continuous_bernoulli"]),
            st.floats(0.1, 2.0),
        ),
        st.builds(lambda v: {"likelihood": "categorical", "levels": v}, not_positive_int()),
        st.just({"likelihood": "categorical", "levels": 1}),
        st.just({"likelihood": "categorical"}),  # no levels
        st.builds(lambda v: {"likelihood": "categorical", "levels": v}, huge()),
        st.builds(
            lambda lik: {"likelihood": lik, "levels": 3},
            st.sampled_from(["bernoulli", "normal", "continuous_bernoulli"]),
        ),
    )
)
def test_vae_configuration(case):
    expect_error("VAE(likelihood/activation/obs_scale/levels)", lambda: pyrobn.VAE(6, **case))
    expect_error(
        "ConditionalVAE(likelihood/...)",
        lambda: pyrobn.ConditionalVAE(6, n_classes=2, **case),
    )


@SETTINGS
@given(
    n_classes=st.one_of(not_positive_int(), st.just(1), huge()),
    sigmoid=st.one_of(st.integers(), st.text(max_size=2), st.none(), st.floats()),
)
def test_conditional_classes_and_autoencoder_flags(n_classes, sigmoid):
    expect_error(
        "ConditionalVAE(n_classes=)",
        lambda: pyrobn.ConditionalVAE(6, n_classes=n_classes, hidden=(4,)),
    )
    expect_error(
        "Autoencoder(sigmoid_output=)",
        lambda: pyrobn.Autoencoder(6, hidden=(4,), sigmoid_output=sigmoid),
    )


@SETTINGS
@given(
    every=st.one_of(
        st.integers(), st.floats(), st.text(max_size=2), st.none(), st.just(np.bool_(True))
    ),
    temperature=st.one_of(
        st.floats(max_value=-1e-300),
        st.just(math.nan),
        st.just(math.inf),
        st.just(-math.inf),
        st.booleans(),
        st.none(),
        st.text(max_size=3),
        st.complex_numbers(min_magnitude=0.1, max_magnitude=10),
        st.just(torch.tensor([0.5, 1.0])),
    ),
)
def test_conditional_every_layer_and_temperature(every, temperature):
    """condition_every_layer must be a bool; temperature a real number >= 0 (both named)."""
    cvae = _models()["cvae"]
    for entry, call, word in (
        (
            "ConditionalVAE(condition_every_layer=)",
            lambda: pyrobn.ConditionalVAE(6, n_classes=2, hidden=(4,), condition_every_layer=every),
            "condition_every_layer",
        ),
        (
            "ConditionalVAE.sample(temperature=)",
            lambda: cvae.sample(2, y=0, temperature=temperature),
            "temperature",
        ),
    ):
        expect_error(entry, call)
        with pytest.raises(pyrobn.errors.PyrobnError, match=word):
            call()


# ----------------------------------------------------------------------------- data
@SETTINGS
@given(data=st.data())
def test_data_of_every_method(data):
    m = _models()
    for name, kind in (("bernoulli", "unit"), ("normal", "real"), ("categorical", "levels")):
        vae = m[name]
        x = data.draw(bad_matrix(D, kind))
        expect_error(f"VAE.fit(x) [{name}]", lambda: vae.fit(x, steps=1, progress=False))  # noqa: B023
        expect_error(f"VAE.elbo(x) [{name}]", lambda: vae.elbo(x))  # noqa: B023
        expect_error(
            f"VAE.log_likelihood(x) [{name}]",
            lambda: vae.log_likelihood(x, num_samples=2),  # noqa: B023
        )
        expect_error(f"VAE.encode(x) [{name}]", lambda: vae.encode(x))  # noqa: B023
        expect_error(f"VAE.reconstruct(x) [{name}]", lambda: vae.reconstruct(x))  # noqa: B023
        expect_error(
            f"VAE.interpolate(x0, x1) [{name}]",
            lambda: vae.interpolate(x, x, steps=3),  # noqa: B023
        )
        expect_error(
            f"VAE.attribute_vector(x_pos) [{name}]",
            lambda: vae.attribute_vector(x, m["x"]),  # noqa: B023
        )
        expect_error(
            f"VAE.shift(x) [{name}]",
            lambda: vae.shift(x, torch.zeros(L)),  # noqa: B023
        )
        expect_error(
            f"VAE.init_from_embedding(x) [{name}]",
            lambda: vae.init_from_embedding(x, torch.randn(4, L), steps=1),  # noqa: B023
        )
        expect_error(
            f"estimator_spread(x) [{name}]",
            lambda: estimator_spread(vae, x, [1], repeats=2),  # noqa: B023
        )
    x = data.draw(bad_matrix(D, "unit"))
    cvae, ae = m["cvae"], m["ae"]
    y4 = torch.arange(4) % K
    expect_error("ConditionalVAE.fit(x)", lambda: cvae.fit(x, y4, steps=1, progress=False))
    expect_error("ConditionalVAE.elbo(x)", lambda: cvae.elbo(x, y4))
    expect_error("ConditionalVAE.log_likelihood(x)", lambda: cvae.log_likelihood(x, y4))
    expect_error("ConditionalVAE.encode(x)", lambda: cvae.encode(x, y4))
    x = data.draw(bad_matrix(D, "real"))
    expect_error("Autoencoder.fit(x)", lambda: ae.fit(x, steps=1, progress=False))
    expect_error("Autoencoder.encode(x)", lambda: ae.encode(x))
    expect_error("Autoencoder.mse(x)", lambda: ae.mse(x))


@SETTINGS
@given(data=st.data())
def test_latent_codes_and_labels(data):
    m = _models()
    vae, cvae = m["normal"], m["cvae"]
    z = data.draw(bad_matrix(L, "real"))
    expect_error("VAE.decode(z)", lambda: vae.decode(z))
    expect_error("VAE.shift(vector)", lambda: vae.shift(m["x"], z))
    expect_error("ConditionalVAE.decode(z)", lambda: cvae.decode(z, 0))
    expect_error("Autoencoder.decode(z)", lambda: m["ae"].decode(z))
    y = data.draw(bad_labels(8, K))
    x = m["x"]
    expect_error("ConditionalVAE.fit(y)", lambda: cvae.fit(x, y, steps=1, progress=False))
    expect_error("ConditionalVAE.elbo(y)", lambda: cvae.elbo(x, y))
    expect_error("ConditionalVAE.log_likelihood(y)", lambda: cvae.log_likelihood(x, y))
    expect_error("ConditionalVAE.encode(y)", lambda: cvae.encode(x, y))
    expect_error("ConditionalVAE.reconstruct(y)", lambda: cvae.reconstruct(x, y))
    expect_error("ConditionalVAE.decode(y)", lambda: cvae.decode(torch.zeros(8, L), y))
    expect_error("ConditionalVAE.sample(y)", lambda: cvae.sample(8, y=y))
    expect_error("ConditionalVAE.nll(y)", lambda: cvae.nll(x, y, num_samples=2))
    lam = data.draw(
        st.one_of(
            st.sampled_from([math.nan, math.inf, -math.inf]),
            st.just([[1.0, 2.0]]),
            st.just("1"),
            st.just(1 + 2j),
            st.just([1.0, math.nan]),
        )
    )
    expect_error("VAE.shift(lam)", lambda: vae.shift(x, torch.zeros(L), lam))


@SETTINGS
@given(
    y=st.one_of(
        st.integers(-3, 10**6),
        st.just([0] * 8),
        st.just(torch.zeros(8, dtype=torch.long)),
        st.text(max_size=3),
        st.floats(allow_nan=True),
        st.booleans(),
    )
)
def test_harness_protocol_labels(y):
    """The harness protocol's y: the VAE has no label (any y is refused, naming it); the
    conditional VAE needs one (None is refused)."""
    m = _models()
    vae, x = m["categorical"], m["x"]
    expect_error("VAE.sample(y=)", lambda: vae.sample(8, y=y))
    expect_error("VAE.nll(y)", lambda: vae.nll(x, y, num_samples=2))
    expect_error("ConditionalVAE.sample(y=None)", lambda: m["cvae"].sample(8, y=None))
    expect_error("ConditionalVAE.nll(y=None)", lambda: m["cvae"].nll(x, num_samples=2))


# ----------------------------------------------------------------------------- options
@SETTINGS
@given(
    which=st.sampled_from(["steps", "batch_size", "num_particles"]),
    value=not_positive_int(),
)
def test_fit_sizes(which, value):
    m = _models()
    if which == "steps" and isinstance(value, int) and value == 0:
        value = -1  # zero steps is a valid (empty) run
    if which == "batch_size" and value is None:
        value = 0  # None is a valid full batch
    kwargs = {"steps": 1, which: value}
    expect_error(f"VAE.fit({which}=)", lambda: m["bernoulli"].fit(m["x"], progress=False, **kwargs))
    expect_error(
        f"ConditionalVAE.fit({which}=)",
        lambda: m["cvae"].fit(m["x"], m["y"], progress=False, **kwargs),
    )
    if which != "num_particles":
        expect_error(
            f"Autoencoder.fit({which}=)", lambda: m["ae"].fit(m["x"], progress=False, **kwargs)
        )


@SETTINGS
@given(
    case=st.one_of(
        st.builds(lambda v: {"lr": v}, not_positive_real()),
        st.builds(lambda v: {"seed": v}, not_a_seed()),
        st.builds(lambda v: {"loss": v}, not_a_name(("trace", "meanfield"))),
        st.builds(lambda v: {"jit": v}, st.one_of(st.integers(2, 5), st.text(max_size=2))),
    )
)
def test_fit_options(case):
    m = _models()
    expect_error(
        f"VAE.fit({next(iter(case))}=)",
        lambda: m["normal"].fit(m["x"], steps=1, progress=False, **case),
    )


@SETTINGS
@given(
    which=st.sampled_from(["num_samples", "seed", "proposal", "n", "huge"]),
    data=st.data(),
)
def test_estimates_and_samples(which, data):
    m = _models()
    vae, cvae, x, y = m["categorical"], m["cvae"], m["x"], m["y"]
    x = x * 4  # levels of the categorical model
    if which == "num_samples":
        value = data.draw(st.one_of(not_positive_int(), huge()))
        expect_error("VAE.elbo(num_samples=)", lambda: vae.elbo(x, num_samples=value))
        expect_error(
            "VAE.log_likelihood(num_samples=)", lambda: vae.log_likelihood(x, num_samples=value)
        )
        expect_error(
            "ConditionalVAE.log_likelihood(num_samples=)",
            lambda: cvae.log_likelihood(m["x"], y, num_samples=value),
        )
        expect_error("estimator_spread(num_samples=)", lambda: estimator_spread(vae, x, [value]))
        if value is not None:  # nll(num_samples=None) takes the model's nll_samples
            expect_error("VAE.nll(num_samples=)", lambda: vae.nll(x, num_samples=value))
            expect_error(
                "ConditionalVAE.nll(num_samples=)",
                lambda: cvae.nll(m["x"], y, num_samples=value),
            )
        vae.nll_samples = value
        expect_error("VAE.nll(nll_samples)", lambda: vae.nll(x))
    elif which == "seed":
        value = data.draw(not_a_seed())
        expect_error("VAE.elbo(seed=)", lambda: vae.elbo(x, seed=value))
        expect_error("VAE.sample(seed=)", lambda: vae.sample(2, seed=value))
        expect_error("VAE.encode(seed=)", lambda: vae.encode(x, sample=True, seed=value))
        expect_error(
            "VAE.interpolate(seed=)", lambda: vae.interpolate(x[0], x[1], sample=True, seed=value)
        )
        expect_error("ConditionalVAE.sample(seed=)", lambda: cvae.sample(2, y=0, seed=value))
    elif which == "proposal":
        value = data.draw(not_a_name(pyrobn.models.vae.PROPOSALS))
        expect_error("VAE.log_likelihood(proposal=)", lambda: vae.log_likelihood(x, proposal=value))
        expect_error(
            "estimator_spread(proposals=)", lambda: estimator_spread(vae, x, proposals=[value])
        )
    elif which == "n":
        value = data.draw(not_positive_int())
        expect_error("VAE.sample(n=)", lambda: vae.sample(value))
        expect_error("ConditionalVAE.sample(n=)", lambda: cvae.sample(value, y=0))
        expect_error("VAE.interpolate(steps=)", lambda: vae.interpolate(x[0], x[1], steps=value))
        expect_error("estimator_spread(repeats=)", lambda: estimator_spread(vae, x, repeats=value))
    else:
        value = data.draw(huge())
        expect_error("VAE.sample(huge n)", lambda: vae.sample(value))
        expect_error("ConditionalVAE.sample(huge n)", lambda: cvae.sample(value, y=1))


@SETTINGS
@given(
    method=not_a_name(("linear", "slerp")),
    embedding=st.one_of(
        st.just(np.zeros((8, L))),  # constant columns
        st.just(np.full((8, L), math.nan)),
        st.just(np.zeros((7, L))),
        st.just(np.zeros((8, L + 1))),
        st.just("e"),
    ),
    scale=not_positive_real(),
)
def test_latent_tool_options(method, embedding, scale):
    m = _models()
    vae, x = m["normal"], m["x"]
    expect_error("VAE.interpolate(method=)", lambda: vae.interpolate(x[0], x[1], method=method))
    expect_error(
        "VAE.interpolate(x0, x1 of two shapes)", lambda: vae.interpolate(x[0], x[:2], steps=3)
    )
    expect_error(
        "VAE.init_from_embedding(embedding=)",
        lambda: vae.init_from_embedding(x, embedding, steps=1),
    )
    expect_error(
        "VAE.init_from_embedding(posterior_scale=)",
        lambda: vae.init_from_embedding(x, torch.randn(8, L), steps=1, posterior_scale=scale),
    )
    expect_error("Autoencoder.encode(sample=True)", lambda: m["ae"].encode(x, sample=True))


# ----------------------------------------------------------------------------- datasets
@SETTINGS
@given(
    case=st.one_of(
        st.builds(lambda v: {"n": v}, not_positive_int()),
        st.builds(lambda v: {"n": v}, huge()),
        st.builds(
            lambda v: {"noise": v},
            st.one_of(st.floats(max_value=-1e-9), st.just(math.nan), st.just(math.inf)),
        ),
        st.builds(lambda v: {"seed": v}, not_a_seed()),
    )
)
def test_swiss_roll(case):
    expect_error("datasets.swiss_roll", lambda: pyrobn.datasets.swiss_roll(**{"n": 10, **case}))


@SETTINGS
@given(
    z=st.one_of(
        st.just(np.zeros((2, 2))),  # fewer than 3 rows
        st.just(np.full((5, 2), math.nan)),
        st.just(np.zeros(5)),
        st.just("z"),
        st.just(np.zeros((5, 2), dtype=complex)),
    )
)
def test_best_direction_spearman(z):
    t = np.arange(5.0)
    expect_error(
        "datasets.best_direction_spearman",
        lambda: pyrobn.datasets.best_direction_spearman(z, t, np.zeros((5, 2)), t),
    )
