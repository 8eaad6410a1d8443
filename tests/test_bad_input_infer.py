"""Bad input to MAP, guide comparison and information theory: always a pyrobn error.

Every public entry point of the area (``map_estimate``, ``weight_decay_prior``,
``delta_guide``, ``FusedAdam``, ``compare_guides``, ``GridDensity``, the functions of
``pyrobn.info``) is
given malformed values, one argument at a time, the others valid: NaN, inf, wrong shapes
and dtypes, empty, negative and zero sizes, bools and floats for ints, strings, complex
numbers, out-of-range values. The error must be a :class:`pyrobn.errors.PyrobnError`
(never a raw ``TypeError``/``IndexError``/``RuntimeError``, never a NaN result). The CLI's
cases are in ``tests/test_cli.py``.

``CASES`` lists the explicit cases (entry point, argument, value); the property tests draw
from them and from generated values. ``python tests/test_bad_input_infer.py`` counts, per
entry point, the cases that got a clear pyrobn error.
"""

from __future__ import annotations

import math
import sys
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pyrobn import info
from pyrobn.errors import PyrobnError
from pyrobn.infer import compare_guides, map_estimate, weight_decay_prior
from pyrobn.infer.compare import GridDensity
from pyrobn.infer.map import delta_guide
from pyrobn.infer.optim import FusedAdam

SETTINGS = settings(max_examples=40, deadline=None)

# --------------------------------------------------------------------------- bad values
NAN, INF = math.nan, math.inf
#: never a count: zero/negative, bools, floats, strings, complex, non-finite, containers
BAD_COUNT = [0, -1, -(10**20), 2.5, 2.0, True, False, "3", 3 + 0j, NAN, INF, None, [3],
             torch.tensor(3), np.float64(3.0)]  # fmt: skip
#: never a count >= 0 (0 allowed)
BAD_COUNT0 = [v for v in BAD_COUNT if not (isinstance(v, int) and v == 0 and v is not False)]
#: never a seed (None is a seed: the caller's streams)
BAD_SEED = [v for v in BAD_COUNT0 if v is not None]
#: never a positive real number
BAD_POSITIVE = [0, 0.0, -1.0, -1e-300, NAN, INF, -INF, True, "0.1", 1j, None, [0.1],
                torch.tensor(0.1), np.array([0.1])]  # fmt: skip
#: never a probability table over 2 states
BAD_TABLE = [
    [NAN, 1.0],
    [INF, 0.0],
    [1.5, -0.5],
    [0.5, 0.6],
    [0.5],
    [],
    0.5,
    "ab",
    [0.5 + 0j, 0.5],
    [True, False],
    [[0.5, 0.5], [0.5]],
    torch.tensor([0.5, 0.5], dtype=torch.complex64),
    torch.zeros(2, 0),
    None,
    object(),
]
#: never a logarithm base (> 1)
BAD_BASE = [1, 1.0, 0.5, 0, -2, NAN, INF, True, "2", 2j, None, [2.0]]


def _normal_mean_model(y):
    mu = pyro.sample("mu", dist.Normal(y.new_tensor(0.0), y.new_tensor(10.0)))
    with pyro.plate("data", y.shape[0]):
        pyro.sample("y", dist.Normal(mu, 1.0), obs=y)


Y = torch.linspace(-1.0, 3.0, 12, dtype=torch.float64)
#: data the normal-mean model cannot use
BAD_DATA = [
    torch.tensor([1.0, NAN], dtype=torch.float64),
    torch.tensor([1.0, INF], dtype=torch.float64),
    torch.ones(3, 2, dtype=torch.float64),
    torch.ones(3, dtype=torch.complex128),
    "data",
    None,
    [1.0, 2.0],
    np.ones(3),
    torch.ones(3, dtype=torch.bool),
]


def _map(**kwargs: Any) -> Any:
    args = kwargs.pop("_args", (Y,))
    model = kwargs.pop("_model", _normal_mean_model)
    options = {"steps": 2, "polish": 0} | kwargs
    return map_estimate(model, *args, **options)


def _compare(**kwargs: Any) -> Any:
    args = kwargs.pop("_args", (Y,))
    model = kwargs.pop("_model", _normal_mean_model)
    guides = kwargs.pop("_guides", {"normal": "normal"})
    options = {"steps": 2, "num_samples": 3, "elbo_particles": 2} | kwargs
    return compare_guides(model, guides, *args, **options)


GRID = torch.linspace(-3.0, 3.0, 11, dtype=torch.float64)
P2 = torch.tensor([0.5, 0.5], dtype=torch.float64)


def _cases() -> list[tuple[str, str, Any, Callable[[], Any]]]:
    """(entry point, argument, value, call) for every explicit bad case."""
    cases: list[tuple[str, str, Any, Callable[[], Any]]] = []

    def add(entry: str, arg: str, values: list[Any], call: Callable[[Any], Any]) -> None:
        for v in values:
            cases.append((entry, arg, v, lambda v=v: call(v)))

    # map_estimate
    for arg in ("steps",):
        add("map_estimate", arg, BAD_COUNT, lambda v, a=arg: _map(**{a: v}))
    for arg in ("polish", "max_plate_nesting"):
        add(
            "map_estimate",
            arg,
            [v for v in BAD_COUNT0 if v is not None],
            lambda v, a=arg: _map(**{a: v}),
        )
    add("map_estimate", "seed", BAD_SEED, lambda v: _map(seed=v))
    for arg in ("lr", "final_lr"):
        add("map_estimate", arg, BAD_POSITIVE, lambda v, a=arg: _map(**{a: v}))
    add("map_estimate", "prefix", ["", ".x", "x.", 3, b"x", ["x"]], lambda v: _map(prefix=v))
    add(
        "map_estimate",
        "init",
        [
            {"sigma": 1.0},
            {"mu": NAN},
            {"mu": INF},
            {"mu": [1.0, 2.0]},
            {"mu": "a"},
            {"mu": 1j},
            {"mu": None},
            [1.0],
            "mu",
        ],
        lambda v: _map(init=v),
    )
    add("map_estimate", "loss", ["elbo", 3, object()], lambda v: _map(loss=v))
    add("map_estimate", "optim", ["adam", 3, torch.optim.Adam], lambda v: _map(optim=v))
    add("map_estimate", "model", [None, 3, "model", [1]], lambda v: _map(_model=v))
    add("map_estimate", "data", BAD_DATA, lambda v: _map(_args=(v,)))

    # weight_decay_prior and delta_guide
    add(
        "weight_decay_prior",
        "lam",
        BAD_POSITIVE,
        lambda v: weight_decay_prior(torch.nn.Linear(2, 1), v),
    )
    add(
        "weight_decay_prior",
        "kind",
        ["cauchy", "", None, 3, "Normal"],
        lambda v: weight_decay_prior(torch.nn.Linear(2, 1), 1.0, kind=v),
    )
    add(
        "weight_decay_prior",
        "module",
        [None, "net", 3, [torch.nn.Linear(2, 1)], torch.zeros(2)],
        lambda v: weight_decay_prior(v, 1.0),
    )
    add(
        "weight_decay_prior",
        "exclude",
        ["bias", 3, ["bias"]],
        lambda v: weight_decay_prior(torch.nn.Linear(2, 1), 1.0, exclude=v),
    )
    add(
        "delta_guide",
        "prefix",
        ["", ".x", "x.", 3, b"x"],
        lambda v: delta_guide(_normal_mean_model, prefix=v),
    )

    # FusedAdam
    add("FusedAdam", "lr", BAD_POSITIVE, lambda v: FusedAdam(lr=v))
    add(
        "FusedAdam",
        "betas",
        [(0.9,), (1.0, 0.9), (-0.1, 0.9), "ab", None, (NAN, 0.9), (True, 0.9), (0.9, 0.999j)],
        lambda v: FusedAdam(betas=v),
    )
    add("FusedAdam", "eps", [-1.0, NAN, INF, "e", None, True], lambda v: FusedAdam(eps=v))
    add(
        "FusedAdam",
        "weight_decay",
        [-0.1, NAN, INF, "w", None, [0.1]],
        lambda v: FusedAdam(weight_decay=v),
    )

    # compare_guides
    for arg in ("steps", "num_samples", "num_chains", "num_particles", "elbo_particles"):
        add("compare_guides", arg, BAD_COUNT, lambda v, a=arg: _compare(**{a: v}))
    for arg in ("warmup_steps", "max_plate_nesting"):
        add(
            "compare_guides",
            arg,
            [v for v in BAD_COUNT0 if v is not None],
            lambda v, a=arg: _compare(**{a: v}),
        )
    add("compare_guides", "seed", BAD_SEED, lambda v: _compare(seed=v))
    for arg in ("lr", "final_lr"):
        add("compare_guides", arg, BAD_POSITIVE, lambda v, a=arg: _compare(**{a: v}))
    add(
        "compare_guides",
        "hdi_prob",
        [0, 1, 1.5, -0.1, NAN, INF, True, "0.9", 0.9j, None, [0.9]],
        lambda v: _compare(hdi_prob=v),
    )
    add("compare_guides", "plate", ["", 3, None, ["data"]], lambda v: _compare(plate=v))
    add(
        "compare_guides",
        "guides",
        [
            {},
            {"g": "bogus"},
            {"g": 3},
            {"g": None},
            {3: "normal"},
            {"": "normal"},
            ["normal"],
            "normal",
            None,
            {"g": dist.Normal(0.0, 1.0)},
        ],
        lambda v: _compare(_guides=v),
    )
    add(
        "compare_guides",
        "reference",
        [
            {"sigma": dist.Normal(0.0, 1.0)},
            {"mu": "exact"},
            {"mu": 3.0},
            {"mu": torch.zeros(10, 2)},
            {"mu": torch.zeros(1)},
            {"mu": torch.zeros(5, dtype=torch.long)},
            [dist.Normal(0.0, 1.0)],
            "mu",
        ],
        lambda v: _compare(reference=v),
    )
    add("compare_guides", "model", [None, 3, "model"], lambda v: _compare(_model=v))
    add("compare_guides", "data", BAD_DATA, lambda v: _compare(_args=(v,)))
    add(
        "compare_guides",
        "size",
        [10**9, 10**12],
        lambda v: _compare(num_samples=v, steps=1, _guides={"delta": "delta"}),
    )

    # GridDensity
    add(
        "GridDensity",
        "grid",
        [
            GRID.flip(0),
            GRID[:2],
            GRID.reshape(1, -1),
            torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64),
            torch.tensor([0.0, NAN, 1.0], dtype=torch.float64),
            [0.0, 1.0, 2.0],
            "grid",
            None,
        ],
        lambda v: GridDensity(v, torch.zeros(11, dtype=torch.float64)),
    )
    add(
        "GridDensity",
        "log_density",
        [
            torch.zeros(10, dtype=torch.float64),
            torch.full((11,), NAN, dtype=torch.float64),
            torch.full((11,), -INF, dtype=torch.float64),
            torch.full((11,), INF, dtype=torch.float64),
            torch.zeros(11, dtype=torch.complex128),
            "flat",
            None,
        ],
        lambda v: GridDensity(GRID, v),
    )

    # pyrobn.info
    add("info.entropy", "p", BAD_TABLE, lambda v: info.entropy(v))
    for name in ("cross_entropy", "kl_divergence", "js_divergence", "js_distance"):
        fn = getattr(info, name)
        add(f"info.{name}", "p", BAD_TABLE, lambda v, f=fn: f(v, P2))
        add(f"info.{name}", "q", BAD_TABLE, lambda v, f=fn: f(P2, v))
        add(
            f"info.{name}",
            "p, q",
            [
                (P2, torch.tensor([1 / 3] * 3)),
                (P2, dist.Normal(0.0, 1.0)),
                (dist.Normal(0.0, 1.0), dist.MultivariateNormal(torch.zeros(2), torch.eye(2))),
                (dist.Normal(torch.zeros(2), 1.0), dist.Normal(torch.zeros(3), 1.0)),
                (dist.Normal(0.0, 1.0), dist.Categorical(torch.tensor([0.5, 0.5]))),
            ],
            lambda v, f=fn, mc=name in ("kl_divergence", "cross_entropy"): f(
                *v, **({"method": "mc"} if mc else {})
            ),
        )
    for name in ("entropy", "cross_entropy", "kl_divergence", "js_divergence", "js_distance"):
        fn = getattr(info, name)
        args = (P2,) if name == "entropy" else (P2, P2)
        add(f"info.{name}", "base", BAD_BASE, lambda v, f=fn, a=args: f(*a, base=v))
        add(f"info.{name}", "num_samples", BAD_COUNT, lambda v, f=fn, a=args: f(*a, num_samples=v))
        normal = (dist.Normal(0.0, 1.0),) * len(args)
        add(
            f"info.{name}",
            "seed",
            BAD_SEED,
            lambda v, f=fn, a=normal, n=name: f(
                *a, seed=v, **({} if n.startswith("js") else {"method": "mc"})
            ),
        )
        if not name.startswith("js"):
            add(
                f"info.{name}",
                "method",
                ["exact!", "MC", "", None, 3],
                lambda v, f=fn, a=args: f(*a, method=v),
            )
    add(
        "info.information",
        "prob",
        [-0.1, 1.5, NAN, INF, "p", 0.5j, None, [0.5, 2.0], torch.tensor([NAN])],
        lambda v: info.information(v),
    )
    add("info.information", "base", BAD_BASE, lambda v: info.information(0.5, base=v))

    def log_p(x: torch.Tensor) -> torch.Tensor:
        return dist.Normal(0.0, 1.0).log_prob(x)

    fit = info.fit_gaussian_by_kl
    add("info.fit_gaussian_by_kl", "direction", ["sideways", None, 3], lambda v: fit(log_p, v))
    add(
        "info.fit_gaussian_by_kl",
        "log_p",
        [
            None,
            3,
            lambda x: torch.full_like(x, NAN),
            lambda x: torch.full_like(x, -INF),
            lambda x: x[:-1],
            lambda x: 3.0,
        ],
        lambda v: fit(v, "forward", steps=2),
    )
    add(
        "info.fit_gaussian_by_kl",
        "init",
        [(0.0,), (0.0, 0.0), (0.0, -1.0), (NAN, 1.0), ("a", 1.0), (0.0, INF), 3, (True, 1.0)],
        lambda v: fit(log_p, "forward", init=v, steps=2),
    )
    add(
        "info.fit_gaussian_by_kl",
        "grid",
        [
            GRID.flip(0),
            GRID[:2],
            GRID.reshape(1, -1),
            torch.tensor([0.0, 1.0, 3.0], dtype=torch.float64),
            torch.tensor([0.0, NAN, 1.0], dtype=torch.float64),
            "grid",
        ],
        lambda v: fit(log_p, "forward", grid=v, steps=2),
    )
    add(
        "info.fit_gaussian_by_kl",
        "steps",
        BAD_COUNT,
        lambda v: fit(log_p, "forward", steps=v),
    )
    return cases


CASES = _cases()
ENTRY_POINTS = sorted({c[0] for c in CASES})


def _outcome(call: Callable[[], Any]) -> str:
    """'pyrobn' (a clear error), 'accepted' (no error) or the raw exception's type."""
    try:
        result = call()
    except PyrobnError:
        return "pyrobn"
    except Exception as exc:  # what the test must never see
        return type(exc).__name__
    return "accepted: " + repr(result)[:60]


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_every_listed_bad_input_gets_a_pyrobn_error(entry):
    failures = []
    for _, arg, value, call in (c for c in CASES if c[0] == entry):
        outcome = _outcome(call)
        if outcome != "pyrobn":
            failures.append(f"{arg}={value!r}: {outcome}")
    assert not failures, f"{entry}: " + "; ".join(failures)


# ------------------------------------------------------------------- generated values
_junk_numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(10**30), 10**30),
    st.complex_numbers(allow_nan=True),
    st.booleans(),
    st.text(max_size=4),
    st.none(),
)
_non_positive = st.one_of(
    st.floats(max_value=0.0),
    st.just(NAN),
    st.just(INF),
    st.integers(max_value=0),
    st.complex_numbers(),
    st.text(max_size=3),
    st.booleans(),
)
_non_counts = st.one_of(
    st.integers(max_value=0),
    st.floats(allow_nan=True),
    st.booleans(),
    st.text(max_size=3),
    st.complex_numbers(),
)


@SETTINGS
@given(arg=st.sampled_from(["steps", "polish", "lr", "final_lr", "seed"]), data=st.data())
def test_map_estimate_options(arg, data):
    strategy = _non_positive if arg in ("lr", "final_lr") else _non_counts
    value = data.draw(strategy)
    if arg in ("polish", "seed") and isinstance(value, int) and not isinstance(value, bool):
        value = value - 1  # 0 is a valid polish and seed
    with pytest.raises(PyrobnError):
        _map(**{arg: value})


@SETTINGS
@given(
    values=st.lists(
        st.floats(allow_nan=True, allow_infinity=True) | st.complex_numbers(allow_nan=True),
        min_size=1,
        max_size=4,
    )
)
def test_map_estimate_init_values(values):
    value = torch.tensor(values)
    if value.numel() == 1 and not value.is_complex() and bool(torch.isfinite(value).all()):
        value = value.repeat(2)  # a finite scalar is a valid init for mu; make it a bad shape
    with pytest.raises(PyrobnError):
        _map(init={"mu": value})


@SETTINGS
@given(
    arg=st.sampled_from(["steps", "num_samples", "elbo_particles", "lr", "hdi_prob"]),
    data=st.data(),
)
def test_compare_guides_options(arg, data):
    if arg == "lr":
        value = data.draw(_non_positive)
    elif arg == "hdi_prob":
        value = data.draw(_junk_numbers.filter(lambda v: not (isinstance(v, float) and 0 < v < 1)))
    else:
        value = data.draw(_non_counts)
    with pytest.raises(PyrobnError):
        _compare(**{arg: value})


@SETTINGS
@given(
    table=st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=1, max_size=5),
    fn=st.sampled_from(["entropy", "kl_divergence", "cross_entropy", "js_distance"]),
)
def test_info_tables_that_are_not_distributions(table, fn):
    t = torch.tensor(table, dtype=torch.float64)
    finite = bool(torch.isfinite(t).all())
    if finite and bool((t >= 0).all()) and abs(float(t.sum()) - 1) <= 1e-6:
        t = t * 2 + 1  # a valid distribution drawn by chance: make it sum to more than 1
    other = torch.full_like(t, 1.0 / t.numel())
    args = (t,) if fn == "entropy" else (t, other)
    with pytest.raises(PyrobnError):
        getattr(info, fn)(*args)


@SETTINGS
@given(base=_junk_numbers.filter(lambda v: not (isinstance(v, float | int) and v > 1)
                                 or isinstance(v, bool) or v in (INF,)))  # fmt: skip
def test_info_bases(base):
    with pytest.raises(PyrobnError):
        info.entropy(P2, base=base)


@SETTINGS
@given(prob=_junk_numbers.filter(lambda v: not (isinstance(v, float) and 0 <= v <= 1)))
def test_information_of_impossible_probabilities(prob):
    if isinstance(prob, int) and not isinstance(prob, bool) and prob in (0, 1):
        prob = prob + 2
    with pytest.raises(PyrobnError):
        info.information(prob)


def _tally(cases: list[tuple[str, str, Any, Callable[[], Any]]]) -> None:
    tried, clear, raw = Counter(), Counter(), {}
    for entry, arg, value, call in cases:
        outcome = _outcome(call)
        tried[entry] += 1
        clear[entry] += outcome == "pyrobn"
        if outcome != "pyrobn":
            raw.setdefault(entry, []).append(f"{arg}={value!r}: {outcome}")
    print("| entry point | inputs tried | pyrobn error |\n|---|---|---|")
    for entry in sorted(tried):
        print(f"| `{entry}` | {tried[entry]} | {clear[entry]} |")
    print(f"| all | {sum(tried.values())} | {sum(clear.values())} |")
    for entry, items in raw.items():
        print(entry, "->", "; ".join(items)[:2000], file=sys.stderr)


if __name__ == "__main__":
    _tally(CASES)
