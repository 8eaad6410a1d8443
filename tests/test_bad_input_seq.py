"""Bad input to every public entry point of the sequence models (HMM, Markov chain, their
datasets) raises an error from :mod:`pyrobn.errors`, never a raw TypeError/IndexError/
RuntimeError, never a NaN result (hypothesis property tests).

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
from pyrobn.datasets import tagged_corpus, text_corpus
from pyrobn.models.hmm import HiddenMarkovModel
from pyrobn.models.markov import BOS, EOS, MarkovChain

TALLY = BadInputTally()
expect_error = TALLY.expect_error
SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module", autouse=True)
def _report():
    yield
    TALLY.report()


# ----------------------------------------------------------------------------- strategies


def not_natural(none: bool = True):
    """Values that are not an integer >= 0 (nor None unless ``none`` is False: None means
    "no seed" where seeds are asked for)."""
    return st.one_of(
        st.integers(max_value=-1),
        st.floats(allow_nan=True, allow_infinity=True),
        st.booleans(),
        st.text(max_size=3),
        *([st.none()] if none else []),
        st.complex_numbers(max_magnitude=10),
    )


def not_a_seed():
    return not_natural(none=False)


def not_positive_real():
    return st.one_of(
        st.floats(max_value=0.0),
        st.just(math.nan),
        st.just(math.inf),
        st.booleans(),
        st.text(max_size=3),
        st.none(),
        st.complex_numbers(min_magnitude=0.1, max_magnitude=10).filter(lambda z: z.imag != 0),
    )


def not_a_string(choices: tuple[str, ...]):
    return st.one_of(
        st.text(max_size=8).filter(lambda s: s not in choices),
        st.integers(),
        st.none(),
        st.just(list(choices)),
    )


def bad_table(shape: tuple[int, int]):
    """Row-stochastic tables gone wrong: wrong shapes, NaN/inf, negative entries, rows that
    do not sum to 1, strings, complex numbers, ragged lists."""
    rows, cols = shape
    good = np.full(shape, 1.0 / cols)

    def poke(value: float, i: int, j: int) -> np.ndarray:
        t = good.copy()
        t[i % rows, j % cols] = value
        return t

    return st.one_of(
        st.builds(
            poke,
            st.one_of(st.just(math.nan), st.just(math.inf), st.floats(max_value=-1e-3)),
            st.integers(0, 9),
            st.integers(0, 9),
        ),
        st.builds(lambda c: good * c, st.floats(0, 10).filter(lambda c: abs(c - 1) > 1e-3)),
        st.sampled_from(
            [
                np.ones((rows + 1, cols)) / cols,
                np.ones((rows, cols + 1)) / (cols + 1),
                np.ones(cols) / cols,
                "uniform",
                good.astype(complex) + 1j,
                [[1.0] * cols, [1.0]],
            ]
        ),
    )


def categorical_bad_observations():
    """Observations no categorical model with 3 symbols can read."""
    return st.one_of(
        st.lists(st.integers(0, 2), min_size=1, max_size=6).flatmap(
            lambda xs: st.integers(3, 10**6).map(lambda bad: [*xs, bad])
        ),
        st.lists(st.integers(-(10**6), -1), min_size=1, max_size=4),
        st.lists(st.floats(0.01, 2.99).filter(lambda v: v != round(v)), min_size=1, max_size=4),
        st.sampled_from(
            [
                [0.0, math.inf],
                [math.inf],
                [0, 1, 10**30],
                np.array([0, 1], dtype=complex),
                "012",
                np.array([True, False]),
                torch.tensor([True, False]),
                torch.zeros(2, 3, 4, dtype=torch.long),
                torch.tensor(1),
                [],
                torch.zeros(0, 4, dtype=torch.long),
                torch.zeros(3, 0, dtype=torch.long),
                [[0, 1], [1, "a"]],
                [[0, 1], [1, None]],
                [torch.tensor([0, 1]), torch.zeros(2, 2, dtype=torch.long)],
                [torch.tensor([0, 1]), torch.tensor([], dtype=torch.long)],
                None,
                {"x": 1},
            ]
        ),
    )


def gaussian_bad_observations():
    """Observations no Gaussian model with D = 2 can read."""
    return st.one_of(
        st.integers(1, 5).map(lambda t: torch.zeros(t, 3)),
        st.integers(1, 5).map(lambda t: torch.zeros(t)),
        st.integers(1, 5).map(lambda t: torch.zeros(2, t, 1)),
        st.sampled_from(
            [
                torch.tensor([[0.0, math.inf]]),
                torch.tensor([[-math.inf, 0.0], [1.0, 2.0]]),
                torch.zeros(2, 3, 2, dtype=torch.complex64),
                torch.zeros(1, 2, 3, 2),
                torch.zeros(0, 2),
                torch.zeros(2, 0, 2),
                "ab",
                [[0.0, 1.0], [2.0]],
                [torch.zeros(3, 2), torch.zeros(3)],
                np.array([[True, False]]),
                None,
            ]
        ),
    )


def categorical_model() -> HiddenMarkovModel:
    return HiddenMarkovModel(2, "categorical", n_symbols=3, seed=1)


def gaussian_model() -> HiddenMarkovModel:
    return HiddenMarkovModel(2, "gaussian", n_features=2, seed=1)


HMM_QUERIES = ("log_prob", "posterior_marginals", "predict_proba", "viterbi", "predict", "fit")


# ----------------------------------------------------------------------------- HMM
@SETTINGS
@given(
    st.sampled_from(
        [
            *("n_states", "emission", "n_symbols", "n_features", "concentration"),
            *("min_variance", "seed", "init_probs", "trans_probs", "emission_probs"),
            *("means", "variances"),
        ]
    ),
    st.data(),
)
def test_hmm_constructor(argument, data):
    emission = "gaussian" if argument in ("n_features", "means", "variances") else "categorical"
    kwargs: dict[str, Any] = {"n_states": 2, "emission": emission, "n_symbols": 3}
    if argument in ("means", "variances"):
        kwargs["n_features"] = 2
    value = {
        "n_states": not_positive_int(),
        "emission": not_a_string(("categorical", "gaussian")),
        "n_symbols": not_positive_int(),
        "n_features": not_positive_int(),
        "concentration": not_positive_real(),
        "min_variance": not_positive_real(),
        "seed": not_a_seed(),
        "init_probs": bad_table((1, 2)).map(lambda t: t[0] if isinstance(t, np.ndarray) else t),
        "trans_probs": bad_table((2, 2)),
        "emission_probs": bad_table((2, 3)),
        "means": st.sampled_from(
            [[[0.0, math.nan]] * 2, [[0.0]] * 3, [[math.inf, 0.0]] * 2, "0", [[1j, 0]] * 2]
        ),
        "variances": st.sampled_from(
            [[[1.0, 0.0]] * 2, [[1.0, -1.0]] * 2, [[1.0, math.nan]] * 2, [[1.0]] * 3, "1"]
        ),
    }[argument]
    kwargs[argument] = data.draw(value)
    if argument == "init_probs" and isinstance(kwargs[argument], np.ndarray):
        if kwargs[argument].shape == (2,) and abs(kwargs[argument].sum() - 1) < 1e-6:
            kwargs[argument] = kwargs[argument] * 3  # still a distribution: make it bad
    expect_error(f"HiddenMarkovModel({argument}=)", lambda: HiddenMarkovModel(**kwargs))


@SETTINGS
@given(st.sampled_from(HMM_QUERIES), categorical_bad_observations())
def test_hmm_queries_categorical_observations(query, observations):
    model = categorical_model()
    expect_error(f"HMM.{query}(observations)", lambda: getattr(model, query)(observations))


@SETTINGS
@given(st.sampled_from(HMM_QUERIES), gaussian_bad_observations())
def test_hmm_queries_gaussian_observations(query, observations):
    model = gaussian_model()
    expect_error(f"HMM.{query}(observations)", lambda: getattr(model, query)(observations))


@SETTINGS
@given(
    st.sampled_from(HMM_QUERIES),
    st.one_of(
        st.lists(st.integers(-3, 9), min_size=2, max_size=2).filter(
            lambda xs: any(v < 1 or v > 5 for v in xs)
        ),
        st.lists(st.integers(1, 5), min_size=1, max_size=4).filter(lambda xs: len(xs) != 2),
        st.sampled_from([[2.5, 3.0], [True, True], ["5", "5"], [[5, 5]], [5j, 5], None]),
    ),
)
def test_hmm_lengths(query, lengths):
    model = categorical_model()
    x = torch.zeros(2, 5, dtype=torch.long)
    if lengths is None:  # lengths together with mask
        call = lambda: getattr(model, query)(x, lengths=[5, 5], mask=torch.ones(2, 5).bool())  # noqa: E731
    else:
        call = lambda: getattr(model, query)(x, lengths=lengths)  # noqa: E731
    expect_error(f"HMM.{query}(lengths=)", call)


@SETTINGS
@given(
    st.sampled_from(HMM_QUERIES),
    st.sampled_from(
        [
            [[True, False, True, True, True]] * 2,
            [[False] * 5, [True] * 5],
            [[True] * 4] * 2,
            [[2, 1, 1, 1, 1]] * 2,
            [["a"] * 5] * 2,
            [[1.5] * 5] * 2,
            torch.ones(2, 5, dtype=torch.complex64),
        ]
    ),
)
def test_hmm_mask(query, mask):
    model = categorical_model()
    x = torch.zeros(2, 5, dtype=torch.long)
    expect_error(f"HMM.{query}(mask=)", lambda: getattr(model, query)(x, mask=mask))


@SETTINGS
@given(
    st.one_of(
        st.integers(2, 10**6).map(lambda s: [[0, s, -1]]),
        st.integers(-(10**6), -2).map(lambda s: [[0, s, 1]]),
        st.sampled_from(
            [[[0, 1]], [[0.5, 1, 0]], [[True, False, True]], [["0", "1", "0"]], [[1j, 0, 0]]]
        ),
        st.sampled_from([[0, 1, 0, 1], "010", None]).map(lambda s: s if s is not None else {}),
    )
)
def test_hmm_fit_states(states):
    model = categorical_model()
    x = torch.zeros(1, 3, dtype=torch.long)
    expect_error("HMM.fit(states=)", lambda: model.fit(x, states=states))


@SETTINGS
@given(
    st.sampled_from(["method", "max_iter", "tol", "restarts", "steps", "lr", "seed", "n_iter"]),
    st.data(),
)
def test_hmm_fit_settings(argument, data):
    model = categorical_model()
    x = torch.zeros(2, 4, dtype=torch.long)
    value = {
        "method": not_a_string(("auto", "counts", "em", "svi")),
        "max_iter": not_positive_int(),
        "n_iter": not_positive_int().filter(lambda v: v is not None),  # None: not given
        "tol": st.one_of(
            st.floats(max_value=-1e-12), st.just(math.nan), st.just(math.inf), st.text(max_size=2)
        ),
        "restarts": not_positive_int(),
        "steps": not_positive_int(),
        "lr": not_positive_real(),
        "seed": not_a_seed(),
    }[argument]
    kwargs = {argument: data.draw(value)}

    def call():
        with pytest.warns(DeprecationWarning) if argument == "n_iter" else _nothing():
            return model.fit(x, **kwargs)

    expect_error(f"HMM.fit({argument}=)", call)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@SETTINGS
@given(
    st.sampled_from(["n", "length", "seed", "huge"]),
    st.data(),
)
def test_hmm_sample(argument, data):
    model = categorical_model()
    kwargs: dict[str, Any] = {"n": 2, "length": 3}
    if argument == "huge":
        kwargs["n"] = data.draw(st.integers(10**11, 10**15))
    else:
        kwargs[argument] = data.draw(not_a_seed() if argument == "seed" else not_positive_int())
    expect_error(f"HMM.sample({argument})", lambda: model.sample(**kwargs))


@SETTINGS
@given(
    st.sampled_from(["graph", "set_params", "infer_states", "huge"]),
    st.data(),
)
def test_hmm_other_methods(method, data):
    model = categorical_model()
    if method == "graph":
        value = data.draw(not_positive_int().filter(lambda v: v is not None))  # None: default
        expect_error("HMM.graph(steps)", lambda: model.graph(value))
    elif method == "set_params":
        name = data.draw(st.sampled_from(["trans_probs", "means", "bogus"]))
        value = data.draw(bad_table((2, 2))) if name == "trans_probs" else [[0.0]] * 2
        expect_error("HMM.set_params", lambda: model.set_params(**{name: value}))
    elif method == "infer_states":
        temperature = data.draw(st.one_of(st.integers(2, 9), st.floats(0.1, 0.9), st.text()))
        call = lambda: model.infer_states(torch.zeros(4, dtype=torch.long), temperature=temperature)  # noqa: E731
        expect_error("HMM.infer_states(temperature)", call)
    else:
        states = data.draw(st.integers(10**5, 10**9))
        expect_error(
            "HiddenMarkovModel(huge n_states)", lambda: HiddenMarkovModel(states, n_symbols=2)
        )


# ----------------------------------------------------------------------------- Markov chain
@SETTINGS
@given(
    st.sampled_from(["order", "concentration", "alpha", "level", "lower", "unknown", "min_count"]),
    st.data(),
)
def test_markov_constructor(argument, data):
    value = {
        "order": not_natural(),
        "concentration": not_positive_real(),
        "alpha": not_positive_real().filter(lambda v: v is not None),  # None: not given
        "level": not_a_string(("char", "word")),
        "lower": st.one_of(st.integers(), st.text(max_size=2), st.none()),
        "unknown": not_a_string(("error", "unk")),
        "min_count": not_positive_int(),
    }[argument]
    kwargs = {argument: data.draw(value)}

    def call():
        with pytest.warns(DeprecationWarning) if argument == "alpha" else _nothing():
            return MarkovChain(**kwargs)

    expect_error(f"MarkovChain({argument}=)", call)


def bad_corpus():
    return st.one_of(
        st.integers(),
        st.floats(),
        st.none(),
        st.binary(max_size=4),
        st.just([]),
        st.just(torch.zeros(3)),
        st.just({"a": 1}),
        st.lists(st.integers(), min_size=1, max_size=3),
        st.just([["a", 1]]),
        st.just([["a", None], "b"]),
        st.just([["a", BOS]]),
        st.just([["b", EOS, "a"]]),
    )


@SETTINGS
@given(st.sampled_from(["fit", "log_prob", "perplexity", "ngram_data"]), bad_corpus())
def test_markov_corpus(method, corpus):
    mc = MarkovChain(order=2)
    if method != "fit":
        mc.fit(["abc", "cab"])
    expect_error(f"MarkovChain.{method}(corpus)", lambda: getattr(mc, method)(corpus))


@SETTINGS
@given(st.sampled_from(["log_prob", "perplexity", "sample", "generate", "transition_matrix"]))
def test_markov_before_fit(method):
    mc = MarkovChain(order=1)
    args = (["ab"],) if method in ("log_prob", "perplexity") else ()
    expect_error(f"MarkovChain.{method} before fit", lambda: getattr(mc, method)(*args))


@SETTINGS
@given(
    st.sampled_from(["n", "max_length", "temperature", "prompt", "seed", "huge"]),
    st.sampled_from(["sample", "generate"]),
    st.data(),
)
def test_markov_sampling(argument, method, data):
    mc = MarkovChain(order=1).fit(["abcab", "bca"])
    value = {
        "n": not_positive_int() if method == "sample" else not_natural(),
        "max_length": not_natural(),
        "temperature": st.one_of(
            st.floats(max_value=-1e-9),
            st.just(math.nan),
            st.just(math.inf),
            st.text(max_size=2),
            st.booleans(),
            st.complex_numbers(min_magnitude=1, max_magnitude=2),
            st.none(),
        ),
        "prompt": st.sampled_from([[1, 2], "zq", ["a", None], [BOS], ["x"], 5, None, b"ab"]),
        "seed": not_a_seed(),
        "huge": st.integers(10**11, 10**15),
    }[argument]
    drawn = data.draw(value)
    if method == "sample":
        kwargs = {"n": 2, "max_length": 5, "temperature": 1.0, "prompt": "", "seed": 0}
        key = "n" if argument == "huge" else argument
        kwargs[key] = drawn
        call = lambda: mc.sample(**kwargs)  # noqa: E731
    else:
        if argument in ("max_length", "huge"):
            return  # generate's n is max_length
        kwargs = {"prompt": "", "n": 5, "temperature": 1.0, "seed": 0}
        kwargs[argument] = drawn
        call = lambda: mc.generate(**kwargs)  # noqa: E731
    expect_error(f"MarkovChain.{method}({argument}=)", call)


@SETTINGS
@given(
    st.one_of(
        st.sampled_from(
            [
                torch.zeros(2, 2, dtype=torch.long),
                torch.zeros(2),
                torch.zeros(2, 1),
                torch.zeros(2, 1, dtype=torch.bool),
                [[0]],
                None,
                "a",
            ]
        ),
        st.integers(5, 10**6).map(lambda v: torch.tensor([[v]])),
        st.integers(-(10**6), -1).map(lambda v: torch.tensor([[v]])),
    )
)
def test_markov_next_token_log_probs(context):
    mc = MarkovChain(order=1).fit(["abc"])  # 5 symbols: <s>, </s>, a, b, c
    expect_error("MarkovChain.next_token_log_probs", lambda: mc.next_token_log_probs(context))


@SETTINGS
@given(not_positive_int().filter(lambda v: v is not None))  # None: the default length
def test_markov_graph(steps):
    expect_error("MarkovChain.graph(steps)", lambda: MarkovChain(order=1).graph(steps))


# ----------------------------------------------------------------------------- datasets
@SETTINGS
@given(st.sampled_from(["n_sentences", "seed", "held_out", "max_length", "huge"]), st.data())
def test_tagged_corpus(argument, data):
    value = {
        "n_sentences": st.one_of(not_positive_int(), st.just(1)),
        "seed": not_a_seed(),
        "held_out": st.one_of(
            st.floats(max_value=0.0),
            st.floats(min_value=1.0),
            st.just(math.nan),
            st.text(max_size=2),
            st.booleans(),
            st.none(),
        ),
        "max_length": st.one_of(not_positive_int(), st.just(1)),
        "huge": st.integers(10**10, 10**14),
    }[argument]
    kwargs = {("n_sentences" if argument == "huge" else argument): data.draw(value)}
    expect_error(f"tagged_corpus({argument}=)", lambda: tagged_corpus(**kwargs))


@SETTINGS
@given(st.sampled_from(["source", "held_out", "seed", "min_chars"]), st.data())
def test_text_corpus(argument, data):
    value = {
        "source": not_a_string(("apuntes", "python-docs")),
        "held_out": st.one_of(
            st.floats(max_value=-1e-9),
            st.floats(min_value=1.0),
            st.just(math.nan),
            st.text(max_size=2),
            st.booleans(),
        ),
        "seed": not_a_seed(),
        "min_chars": not_natural(),
    }[argument]
    kwargs = {argument: data.draw(value)}
    expect_error(f"text_corpus({argument}=)", lambda: text_corpus(**kwargs))


@SETTINGS
@given(
    st.sampled_from([[["el", "ordenador"]], "el perro", [], [[]], [["el", 3]], None, [[None]], 5])
)
def test_tagged_corpus_encode(sentences):
    corpus = _small_corpus()
    expect_error("TaggedCorpus.encode", lambda: corpus.encode(sentences))


_CORPUS: list[Any] = []


def _small_corpus():
    if not _CORPUS:
        _CORPUS.append(tagged_corpus(20, seed=0))
    return _CORPUS[0]


def test_the_valid_neighbours_of_the_bad_inputs_work():
    """The defaults the properties perturb are themselves valid (so each failure above is
    caused by the one bad value)."""
    model = categorical_model()
    x = torch.zeros(2, 5, dtype=torch.long)
    assert model.log_prob(x, lengths=[5, 3]).shape == (2,)
    assert model.fit(x[:1, :3], states=[[0, 1, -1]]) is model
    assert model.sample(2, 3, seed=0)[1].shape == (2, 3)
    assert gaussian_model().log_prob(torch.zeros(4, 2)).shape == ()
    assert categorical_model().log_prob(torch.tensor([0.0, math.nan, 2.0])).isfinite()
    mc = MarkovChain(order=1).fit(["abcab", "bca"])
    assert len(mc.sample(2, 5, temperature=1.0, prompt="", seed=0)) == 2
    assert mc.generate("", 5, 1.0, seed=0) == mc.generate("", 5, 1.0, seed=0)
    assert isinstance(pyrobn.MarkovChain(order=0).fit(["a"]).n_parameters, int)
    assert len(text_corpus("apuntes", held_out=0.5, seed=0, min_chars=40).train) > 0
