"""Every public constructor and method of the densities/mixtures area, fed malformed values,
raises an error from :mod:`pyrobn.errors` (never a raw TypeError, IndexError,
RuntimeError, ... and never a NaN answer).

Two kinds of checks:

* a sweep: for every entry point and every argument, each value of a catalogue of bad
  values (NaN, inf, wrong shapes and dtypes, empty, negative and zero sizes, bools and
  floats for ints, strings, complex numbers, out-of-range labels, absurd sizes) is put in
  that argument, the others kept valid. ``PYROBN_BAD_INPUT_TABLE=path`` writes the count of
  inputs tried and of clear pyrobn errors per entry point (the table of the report).
* hypothesis: random arrays of random shapes and dtypes, with NaN or inf at random places,
  thrown at every data argument: either a pyrobn error, or (the input happened to be
  valid) a finite answer.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyrobn import (
    KDE,
    BayesianLinearRegression,
    GaussianMixture,
    MixtureDensityNetwork,
    NaiveBayes,
    mle,
)
from pyrobn.datasets import course_mixture, gaussian_blobs, inverse_sine, student_samples
from pyrobn.datasets.mixture import course_mixture_log_prob
from pyrobn.density import EmpiricalDistribution
from pyrobn.errors import PyrobnError

NAN, INF = float("nan"), float("inf")


class Object:
    """Not a number, not an array."""


# ------------------------------------------------------------------ bad values
#: positive integer arguments (sizes, counts, iterations)
BAD_COUNT = [0, -1, 2.5, True, "3", 1 + 2j, None, NAN, INF, Object()]
#: positive float scalars (rates, scales, precisions)
BAD_POSITIVE = [0.0, -1.0, NAN, INF, -INF, True, "1", 1 + 2j, None, [1.0, 2.0], Object()]
#: positive floats where None means "the default"
BAD_POSITIVE_OPTIONAL = [v for v in BAD_POSITIVE if v is not None]
#: optional positive integers (None is valid)
BAD_COUNT_OPTIONAL = [0, -1, 2.5, True, "3", 1 + 2j]
#: floats >= 0
BAD_NONNEG = [-1e-3, NAN, INF, True, "0", 1j, [0.0], Object()]
#: seeds (integers >= 0)
BAD_SEED = [-1, 2.5, True, "0", 1j, NAN, Object()]
#: absurd sizes: a clear SizeLimitError before any allocation
HUGE = [10**12]


def bad_points(dim: int) -> list[Any]:
    """Malformed (N, dim) data."""
    good = np.arange(4.0 * dim).reshape(4, dim)
    nan, inf = good.copy(), good.copy()
    nan[2, dim - 1] = NAN
    inf[1, 0] = -INF
    return [
        nan,
        inf,
        good + 1j,
        good.astype(str),
        [[0.0] * dim, [1.0] * (dim + 1)],  # ragged
        np.zeros((0, dim)),
        np.zeros((2, dim, 2)),
        np.zeros((4, dim + 1)),
        "text",
        None,
        np.array([Object()] * 4),
        torch.full((4, dim), NAN),
        torch.zeros(4, dim, dtype=torch.complex64),
    ]


def bad_labels(n: int) -> list[Any]:
    """Malformed labels for n rows (two classes, 0 and 1)."""

    def put(value: Any, dtype: Any = float) -> np.ndarray:
        labels = (np.arange(n) % 2).astype(dtype)
        labels[min(2, n - 1)] = value
        return labels

    return [
        put(-2),
        put(0.5),
        put(NAN),
        put(10**12, np.int64),
        (np.arange(n) % 2).astype(str),
        (np.arange(n) % 2) + 1j,
        np.zeros(n + 1, dtype=int),  # wrong length
        np.zeros((n, 2), dtype=int),
        None,
    ]


BAD_STRING = ["gibbs", 3, None, ["a"], Object()]

# ------------------------------------------------------------------ fitted models
X2 = gaussian_blobs(60, 0)
XC, TC = inverse_sine(40, seed=0, device="cpu")
XR = np.random.default_rng(0).normal(size=(30, 3))
YR = XR @ np.array([1.0, -1.0, 0.5])
XN = np.column_stack([np.random.default_rng(1).normal(size=40), np.arange(40) % 2])
YN = (np.arange(40) // 20).astype(int)


@functools.cache
def fitted_mixture() -> GaussianMixture:
    return GaussianMixture(2, dim=2, learn="all").fit(X2, method="em", max_iter=5)


@functools.cache
def fitted_nb() -> NaiveBayes:
    return NaiveBayes(["gaussian", "bernoulli"]).fit(XN, YN)


@functools.cache
def fitted_mdn() -> MixtureDensityNetwork:
    return MixtureDensityNetwork(1, 1, 2, hidden=4).fit(XC, TC, steps=2)


# ------------------------------------------------------------------ entry points
def entry(fn: Callable[..., Any], valid: dict[str, Any], bad: dict[str, list[Any]]):
    return fn, valid, bad


def _gm(**kw):
    return GaussianMixture(**kw)


def _nb(**kw):
    return NaiveBayes(**kw)


def _mdn(**kw):
    return MixtureDensityNetwork(**kw)


def _blr(**kw):
    return BayesianLinearRegression(**kw)


ENTRIES: dict[str, tuple[Callable[..., Any], dict[str, Any], dict[str, list[Any]]]] = {
    "GaussianMixture()": entry(
        _gm,
        {"n_components": 2, "dim": 1},
        {
            "n_components": [*BAD_COUNT, 10**9],
            "dim": [*BAD_COUNT, 10**6],
            "learn": ["colour", 3, None, ["weights", "x"], Object()],
            "concentration": [
                *[v for v in BAD_POSITIVE_OPTIONAL if v != [1.0, 2.0]],
                *[[1.0], [1.0, 2.0, 3.0], [[1.0, 2.0]], [1.0, -2.0], "ab"],
            ],
            "weights": [*bad_points(1)[:9], [0.5, 0.6], [1.5, -0.5], [1.0, 0.0], 3.0],
            "means": [*bad_points(1)[:9], *bad_points(1)[10:], [0.0, 1.0, 2.0]],
            "scales": [*bad_points(1)[:9], *bad_points(1)[10:], [1.0, 0.0], [1.0, -1.0]],
            "covariances": [
                *bad_points(1)[:9],
                *bad_points(1)[10:],
                *[[[[1.0]], [[-1.0]]], [[[1.0]]], np.ones((2, 1, 1)) * NAN],
            ],
        },
    ),
    "GaussianMixture(dim=2) covariances": entry(
        _gm,
        {"n_components": 2, "dim": 2},
        {
            "covariances": [
                [np.eye(2), [[2.0, 0.5], [0.0, 1.0]]],  # not symmetric
                [np.eye(2), [[1.0, 2.0], [2.0, 1.0]]],  # indefinite
                [np.eye(2), np.eye(2) * 1j],
            ],
        },
    ),
    "GaussianMixture.fit": entry(
        lambda **kw: GaussianMixture(2, dim=2, learn="all").fit(**kw),
        {"x": X2, "method": "em", "max_iter": 2},
        {
            "x": [*bad_points(2), np.ones((5, 2))],  # one distinct point < 2 components
            "method": BAD_STRING,
            "max_iter": [*BAD_COUNT_OPTIONAL, NAN, INF, Object()],
            "tol": BAD_NONNEG,
            "restarts": BAD_COUNT,
            "init": BAD_STRING,
            "reg_covar": BAD_NONNEG,
            "seed": BAD_SEED,
            "lr": BAD_POSITIVE,
            "batch_size": BAD_COUNT_OPTIONAL,
        },
    ),
    "GaussianMixture.fit(svi)": entry(
        lambda **kw: GaussianMixture(2).fit(**kw),
        {"x": XC[:, 0], "steps": 2},
        {
            "steps": [-1, 2.5, True, "3", 1 + 2j, NAN, INF, Object()],  # 0 and None are valid
            "lr": BAD_POSITIVE,
            "optimizer": BAD_STRING,
            "batch_size": BAD_COUNT_OPTIONAL,
            "max_iter": [5],  # an EM option for SVI
        },
    ),
    "GaussianMixture queries": entry(
        lambda which, x: getattr(fitted_mixture(), which)(x),
        {"which": "log_prob", "x": X2},
        {"x": bad_points(2)},
    ),
    "GaussianMixture.predict_proba": entry(
        lambda x: fitted_mixture().predict_proba(x), {"x": X2}, {"x": bad_points(2)}
    ),
    "GaussianMixture.sample": entry(
        lambda **kw: fitted_mixture().sample(**kw),
        {"n": 3},
        {"n": BAD_COUNT + HUGE, "seed": BAD_SEED},
    ),
    "NaiveBayes()": entry(
        _nb,
        {},
        {
            "features": ["poisson", ["gaussian", "x"], [], 3, None, Object()],
            "alpha": BAD_NONNEG,
            "concentration": [*BAD_POSITIVE_OPTIONAL, 0.5],
            "class_concentration": [0.5, NAN, INF, True, "2", 1j],
            "var_smoothing": BAD_NONNEG,
            "n_classes": [*BAD_COUNT_OPTIONAL, NAN],
            "n_categories": [*BAD_COUNT_OPTIONAL, [2, 0], [2, "a"], "abc"],
            "binarize": [NAN, INF, "0.5", 1j, True],
            "dtype": ["float16", 3, None, ["float64"]],
        },
    ),
    "NaiveBayes.fit": entry(
        lambda **kw: NaiveBayes(["gaussian", "bernoulli"]).fit(**kw),
        {"X": XN, "y": YN},
        {
            "X": [*bad_points(2), np.column_stack([XN[:, 0], XN[:, 1] + 0.5])],
            "y": [*bad_labels(40), np.full(40, -1)],  # no label and no n_classes
            "method": BAD_STRING,
            "max_iter": BAD_COUNT,
            "restarts": BAD_COUNT,
            "seed": BAD_SEED,
            "batch_size": BAD_COUNT_OPTIONAL,
        },
    ),
    "NaiveBayes.partial_fit": entry(
        lambda **kw: NaiveBayes(["gaussian", "bernoulli"]).fit(XN, YN).partial_fit(**kw),
        {"X": XN[:4], "y": YN[:4]},
        {"X": bad_points(2), "y": [*bad_labels(4), [0, 1, 5, 0], [-1, 0, 0, 1]]},
    ),
    "NaiveBayes queries": entry(
        lambda which, X: getattr(fitted_nb(), which)(X),
        {"which": "predict_proba", "X": XN},
        {"X": [*bad_points(2), np.array([[0.0, 0.5]])]},
    ),
    "NaiveBayes.log_prob(X, y)": entry(
        lambda **kw: fitted_nb().log_prob(**kw),
        {"X": XN[:4], "y": YN[:4]},
        {"y": bad_labels(4)[:-1]},  # y=None is valid: log p(x)
    ),
    "NaiveBayes.score": entry(
        lambda **kw: fitted_nb().score(**kw), {"X": XN[:4], "y": YN[:4]}, {"y": bad_labels(4)}
    ),
    "MixtureDensityNetwork()": entry(
        _mdn,
        {"in_dim": 1, "out_dim": 1, "n_components": 2, "hidden": 4},
        {
            "in_dim": [*BAD_COUNT, 10**9],
            "out_dim": [*BAD_COUNT, 10**6],
            "n_components": [*BAD_COUNT, 10**9],
            "hidden": [0, -3, 2.5, True, "abc", [4, 0], [10**9], None, Object()],
            "covariance": BAD_STRING,
            "activation": BAD_STRING,
            "min_scale": BAD_POSITIVE,
            "seed": BAD_SEED,
            "dtype": ["float16", 3, None],
        },
    ),
    "MixtureDensityNetwork.fit": entry(
        lambda **kw: MixtureDensityNetwork(1, 1, 2, hidden=4).fit(**kw),
        {"x": XC, "t": TC, "steps": 1},
        {
            "x": bad_points(1),
            "t": [*bad_points(1), TC[:5]],
            "steps": BAD_COUNT,
            "lr": BAD_POSITIVE,
            "final_lr": BAD_POSITIVE_OPTIONAL,
            "batch_size": BAD_COUNT_OPTIONAL,
            "seed": BAD_SEED,
        },
    ),
    "MixtureDensityNetwork.log_prob": entry(
        lambda **kw: fitted_mdn().log_prob(**kw),
        {"x": XC, "t": TC},
        {"x": bad_points(1), "t": [*bad_points(1), TC[:3]]},
    ),
    "MixtureDensityNetwork.sample": entry(
        lambda **kw: fitted_mdn().sample(**kw),
        {"x": XC, "n_samples": 2},
        {"x": bad_points(1), "n_samples": BAD_COUNT + HUGE, "seed": BAD_SEED},
    ),
    "MixtureDensityNetwork.mode": entry(
        lambda **kw: fitted_mdn().mode(**kw),
        {"x": XC},
        {"x": bad_points(1), "iterations": BAD_COUNT},
    ),
    "BayesianLinearRegression()": entry(
        _blr,
        {"n_features": 3},
        {
            "n_features": BAD_COUNT,
            "noise_scale": BAD_POSITIVE,
            "prior": BAD_STRING,
            "lam": BAD_POSITIVE,
            "dtype": ["float16", 3, None],
        },
    ),
    "BayesianLinearRegression.fit": entry(
        lambda **kw: BayesianLinearRegression(3).fit(**kw),
        {"X": XR, "y": YR, "steps": 1},
        {
            "X": bad_points(3),
            "y": [YR[:5], np.full(30, NAN), YR + 1j, YR.astype(str), None],
            "steps": BAD_COUNT[1:],
            "lr": BAD_POSITIVE,
            "batch_size": BAD_COUNT_OPTIONAL,
            "seed": BAD_SEED,
        },
    ),
    "BayesianLinearRegression closed forms": entry(
        lambda which, X, y: getattr(BayesianLinearRegression(3), which)(X, y),
        {"which": "posterior", "X": XR, "y": YR},
        {"X": bad_points(3), "y": [YR[:5], np.full(30, NAN), YR + 1j, YR.astype(str)]},
    ),
    "KDE()": entry(
        KDE,
        {"data": XC},
        {
            "data": bad_points(1),
            "bandwidth": [*BAD_POSITIVE[:-3], "wide", None],
            "cv_points": BAD_COUNT,
            "seed": BAD_SEED,
        },
    ),
    "KDE.log_prob": entry(
        lambda x: KDE(XC, 0.3).log_prob(x), {"x": XC}, {"x": [*bad_points(1), np.zeros((3, 2))]}
    ),
    "KDE.sample": entry(
        lambda **kw: KDE(XC, 0.3).sample(**kw), {"n": 3}, {"n": BAD_COUNT + HUGE, "seed": BAD_SEED}
    ),
    "EmpiricalDistribution": entry(
        lambda data, n: EmpiricalDistribution(data).sample(n),
        {"data": XC, "n": 3},
        {"data": bad_points(1)[:7] + bad_points(1)[8:], "n": BAD_COUNT + HUGE},  # any D is fine
    ),
    "mle estimators": entry(
        lambda which, x: getattr(mle, which)(x),
        {"which": "gaussian_mean", "x": XR},
        {"x": bad_points(3)[:6] + bad_points(3)[8:]},
    ),
    "mle.gaussian": entry(
        lambda x: mle.gaussian(x),
        {"x": XR},
        {"x": bad_points(3)[:7] + bad_points(3)[8:] + [np.ones((5, 3)), XR[:2]]},
    ),
    "mle.bernoulli": entry(
        lambda x: mle.bernoulli(x), {"x": [0, 1]}, {"x": [[0, 2], [0.5], [NAN], ["a"], [1j], []]}
    ),
    "mle regressions": entry(
        lambda **kw: mle.ridge(**kw),
        {"X": XR, "y": YR, "lam": 1.0},
        {
            "X": bad_points(3),
            "y": [YR[:5], np.full(30, NAN), YR + 1j],
            "lam": BAD_POSITIVE,
            "noise_scale": BAD_POSITIVE,
        },
    ),
    "datasets": entry(
        lambda which, **kw: {
            "course_mixture": course_mixture,
            "inverse_sine": inverse_sine,
            "gaussian_blobs": gaussian_blobs,
            "student_samples": student_samples,
        }[which](**kw),
        {"which": "course_mixture", "n": 5},
        {"n": BAD_COUNT + HUGE, "seed": BAD_SEED},
    ),
    "inverse_sine(noise)": entry(
        lambda **kw: inverse_sine(5, **kw), {}, {"noise": [-0.1, NAN, INF, "0.1", 1j, True]}
    ),
    "student_samples": entry(
        lambda **kw: student_samples(5, **kw),
        {},
        {"missing": [-0.1, 1.0, NAN, "0.1", 1j, True], "hidden": ["x9", 3, ["x1", 2]]},
    ),
    "course_mixture_log_prob": entry(
        lambda **kw: course_mixture_log_prob(**kw),
        {"x": torch.zeros(3), "r": 0.8},
        {"r": [-0.1, 1.5, NAN, "a", 1j], "x": ["text", np.ones(3) + 1j, None]},
    ),
}

#: entry points whose "which" argument also takes every method of the same kind
VARIANTS = {
    "GaussianMixture queries": ["log_prob", "predict_proba", "predict", "score", "bic"],
    "NaiveBayes queries": ["predict_proba", "predict", "log_prob", "joint_log_likelihood"],
    "BayesianLinearRegression closed forms": ["posterior", "map", "mle", "log_evidence"],
    "mle estimators": ["gaussian_mean", "gaussian_variance"],
    "datasets": ["course_mixture", "inverse_sine", "gaussian_blobs", "student_samples"],
}


def cases(name: str) -> list[tuple[dict[str, Any], str]]:
    """Every (arguments, description) with one bad value for the entry point ``name``."""
    _fn, valid, bad = ENTRIES[name]
    variants = VARIANTS.get(name, [valid.get("which")])
    out = []
    for which in variants:
        base = dict(valid) if which is None else {**valid, "which": which}
        for arg, values in bad.items():
            for value in values:
                out.append(({**base, arg: value}, f"{which or ''} {arg}={_show(value)}"))
    return out


def _show(value: Any) -> str:
    text = repr(value).replace("\n", " ")
    return text if len(text) < 60 else text[:57] + "..."


def outcome(name: str, kwargs: dict[str, Any]) -> str | None:
    """None when the call raised a pyrobn error; otherwise what went wrong."""
    fn = ENTRIES[name][0]
    try:
        result = fn(**kwargs)
    except PyrobnError:
        return None
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc)[:120]}"
    if isinstance(result, torch.Tensor) and result.is_floating_point():
        if not bool(torch.isfinite(result).all()):
            return "a non-finite answer"
    return "no error"


@pytest.mark.parametrize("name", list(ENTRIES))
def test_every_bad_value_gets_a_pyrobn_error(name):
    failures = []
    tried = cases(name)
    for kwargs, label in tried:
        problem = outcome(name, kwargs)
        if problem is not None:
            failures.append(f"{label}: {problem}")
    path = os.environ.get("PYROBN_BAD_INPUT_TABLE")
    if path:
        with open(path, "a") as f:
            f.write(
                json.dumps(
                    {"entry": name, "tried": len(tried), "clear": len(tried) - len(failures)}
                )
                + "\n"
            )
    assert not failures, f"{len(failures)} of {len(tried)} bad inputs:\n" + "\n".join(failures)


# ------------------------------------------------------------------ hypothesis
DTYPES = ["float64", "float32", "int64", "bool", "complex128", "str", "object"]


@st.composite
def arrays(draw, rows: int, cols: int):
    """A random array near the valid shape (rows, cols): wrong shapes and dtypes, NaN/inf."""
    shape = draw(
        st.sampled_from(
            [(rows, cols), (rows,), (rows, cols + 1), (0, cols), (rows, cols, 2), (1, cols), ()]
        )
    )
    dtype = draw(st.sampled_from(DTYPES))
    size = int(np.prod(shape)) if shape else 1
    values = draw(
        st.lists(
            st.floats(-1e3, 1e3, allow_nan=False) | st.sampled_from([NAN, INF, -INF]),
            min_size=size,
            max_size=size,
        )
    )
    base = np.array(values, dtype=np.float64).reshape(shape)
    if dtype == "str":
        return base.astype(str)
    if dtype == "object":
        return base.astype(object)
    if dtype in ("int64", "bool"):
        return np.nan_to_num(base, posinf=1, neginf=-1).astype(dtype)
    if dtype == "complex128":
        return base + 1j
    return base.astype(dtype)


def rows_of(a: np.ndarray) -> int:
    return a.shape[0] if a.ndim else 1


DATA_CALLS: dict[str, tuple[Callable[[Any], Any], int, int]] = {
    "GaussianMixture.log_prob": (lambda a: fitted_mixture().log_prob(a), 5, 2),
    "GaussianMixture.fit": (
        lambda a: GaussianMixture(2, dim=2, learn="all").fit(a, method="em", max_iter=2).means,
        6,
        2,
    ),
    "NaiveBayes.predict_proba": (lambda a: fitted_nb().predict_proba(a), 5, 2),
    "NaiveBayes.fit": (lambda a: NaiveBayes().fit(a, np.arange(rows_of(a)) % 2).g_var, 6, 2),
    "MixtureDensityNetwork.log_prob": (lambda a: fitted_mdn().log_prob(x=a, t=a), 5, 1),
    "BayesianLinearRegression.map": (
        lambda a: BayesianLinearRegression(2).map(a, np.ones(rows_of(a))),
        5,
        2,
    ),
    "KDE": (lambda a: KDE(a, 0.5).log_prob(np.zeros((1, a.shape[-1] if a.ndim > 1 else 1))), 5, 2),
    "mle.gaussian": (lambda a: mle.gaussian(a)[1], 6, 2),
}


@pytest.mark.parametrize("name", list(DATA_CALLS))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_malformed_arrays_get_an_error_or_a_finite_answer(name, data):
    call, rows, cols = DATA_CALLS[name]
    array = data.draw(arrays(rows, cols))
    try:
        result = call(array)
    except PyrobnError:
        return
    assert isinstance(result, torch.Tensor | float), type(result)
    values = torch.as_tensor(result)
    assert bool(torch.isfinite(values).all()), (name, array, result)


def test_the_catalogue_is_large():
    """The sweep tries several hundred inputs (the report's table counts them)."""
    total = sum(len(cases(name)) for name in ENTRIES)
    assert total > 600, total
