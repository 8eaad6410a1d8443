"""pyrobn.evaluation: the benchmark harness every paradigm plugs into (issues 17-18)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from common import assert_close
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.linalg import sqrtm
from scipy.stats import energy_distance as scipy_energy_distance

import pyrobn
from pyrobn.errors import ConfigurationError, NonFiniteError, ShapeError, SizeLimitError
from pyrobn.evaluation import (
    Adapter,
    BenchmarkRow,
    bits_per_dim,
    compare_epoch_times,
    energy_distance,
    evaluate,
    format_table,
    frechet_distance,
    nll_score,
    plain_torch_trainer,
    sample_quality,
    samples_per_second,
    summarize,
    train_classifier,
)


class Resampler:
    """A 'model' that returns rows of a data set (optionally of a requested class)."""

    nll_kind = "exact"

    def __init__(self, x, y=None, n_classes=0, nll=None):
        self.x, self.y, self.n_classes, self._nll = x, y, n_classes, nll

    def nll(self, x, y=None, *, seed=None):
        return self._nll(x)

    def sample(self, n, *, y=None, seed=None):
        g = torch.Generator().manual_seed(seed or 0)
        if y is None:
            return self.x[torch.randint(len(self.x), (n,), generator=g)]
        y = torch.as_tensor(y).expand(n)
        out = torch.empty(n, self.x.shape[1])
        for label in y.unique():
            rows = (self.y == label).nonzero().flatten()
            pick = rows[torch.randint(len(rows), (int((y == label).sum()),), generator=g)]
            out[y == label] = self.x[pick].float()
        return out


@pytest.fixture(scope="module")
def data():
    return pyrobn.datasets.book_digits(device="cpu")


@pytest.fixture(scope="module")
def classifier(data):
    return train_classifier(
        data.x_train,
        data.y_train,
        data.x_val,
        data.y_val,
        levels=17,
        epochs=15,
        seed=0,
        x_test=data.x_test,
        y_test=data.y_test,
    )


# ---------------------------------------------------------------- Fréchet distance
def test_frechet_distance_of_1d_gaussians_is_the_closed_form():
    a = torch.tensor([0.0, 2.0, 4.0, 6.0])  # mean 3, sd sqrt(20/3)
    b = torch.tensor([1.0, 1.5, 2.0])  # mean 1.5, sd 0.5
    expected = (3 - 1.5) ** 2 + (math.sqrt(20 / 3) - 0.5) ** 2
    assert_close(frechet_distance(a[:, None], b[:, None]), expected, rtol=1e-10)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), k=st.integers(1, 5))
def test_frechet_distance_matches_the_matrix_square_root_formula(seed, k):
    g = np.random.default_rng(seed)
    a = g.normal(size=(40, k)) @ g.normal(size=(k, k))
    b = g.normal(size=(30, k)) + g.normal(size=k)
    ca, cb = np.cov(a.T).reshape(k, k), np.cov(b.T).reshape(k, k)
    cross = np.real(sqrtm(ca @ cb))
    expected = ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(ca + cb - 2 * cross)
    assert_close(frechet_distance(a, b), expected, rtol=1e-6, atol=1e-8)
    assert_close(frechet_distance(a, b), frechet_distance(b, a), rtol=1e-6, atol=1e-8)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)


def test_frechet_distance_bad_input():
    with pytest.raises(ShapeError):
        frechet_distance(torch.zeros(5, 3), torch.zeros(5, 2))
    with pytest.raises(ShapeError, match="2 rows"):
        frechet_distance(torch.zeros(1, 3), torch.zeros(5, 3))
    bad = torch.zeros(4, 2)
    bad[1, 1] = math.nan
    with pytest.raises(NonFiniteError, match=r"\(1, 1\)"):
        frechet_distance(bad, torch.zeros(4, 2))


# ---------------------------------------------------------------- energy distance
def test_energy_distance_by_hand_in_two_dimensions():
    a = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    b = torch.tensor([[0.0, 0.0], [3.0, 0.0]])
    # between: |a1-b1| = 0, |a1-b2| = 3, |a2-b1| = 5, |a2-b2| = 4 -> mean 3
    # within a: one pair at 5 -> V mean 10/4, U mean 5; within b: one pair at 3 -> 6/4, 3
    assert energy_distance(a, b) == pytest.approx(2 * 3 - 10 / 4 - 6 / 4, abs=1e-12)
    assert energy_distance(a, b, unbiased=True) == pytest.approx(2 * 3 - 5 - 3, abs=1e-12)
    # two point masses r apart: D^2 = 2r
    assert energy_distance(torch.zeros(3, 2), torch.tensor([[3.0, 4.0]] * 2)) == 10.0


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(2, 30), m=st.integers(2, 30))
def test_energy_distance_in_one_dimension_is_scipys_squared(seed, n, m):
    g = np.random.default_rng(seed)
    u, v = g.normal(size=n), g.normal(1.0, 2.0, size=m)
    # scipy: sqrt(2 ∫ (F - G)^2), the square root of the V-statistic
    expected = scipy_energy_distance(u, v) ** 2
    assert_close(energy_distance(u[:, None], v[:, None]), expected, rtol=1e-9, atol=1e-12)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(2, 25), m=st.integers(2, 25))
def test_energy_distance_v_and_u_statistics_and_invariances(seed, n, m):
    g = np.random.default_rng(seed)
    a, b = g.normal(size=(n, 3)), g.normal(size=(m, 3)) + 0.5
    within_a = np.linalg.norm(a[:, None] - a[None], axis=-1).sum() / (n * (n - 1))
    within_b = np.linalg.norm(b[:, None] - b[None], axis=-1).sum() / (m * (m - 1))
    v, u = energy_distance(a, b), energy_distance(a, b, unbiased=True)
    assert_close(v, u + within_a / n + within_b / m, rtol=1e-9, atol=1e-12)
    assert v >= 0 and energy_distance(a, a) == pytest.approx(0.0, abs=1e-12)
    assert_close(energy_distance(b, a), v, rtol=1e-12, atol=1e-12)
    rotation, _ = np.linalg.qr(g.normal(size=(3, 3)))
    shift = g.normal(size=3)
    moved = energy_distance(a @ rotation + shift, b @ rotation + shift)
    assert_close(moved, v, rtol=1e-8, atol=1e-10)


def test_energy_distance_tells_a_shifted_sample_from_a_second_draw():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(500, 2, generator=g), torch.randn(500, 2, generator=g)
    shifted = torch.randn(500, 2, generator=g) + torch.tensor([1.0, 0.0])
    assert energy_distance(a, shifted) > 5 * energy_distance(a, b)


def test_energy_distance_bad_input(monkeypatch):
    with pytest.raises(ShapeError, match=r"\(5, 2\)"):
        energy_distance(torch.zeros(4, 3), torch.zeros(5, 2))
    with pytest.raises(ShapeError):
        energy_distance(torch.zeros(4), torch.zeros(4))
    with pytest.raises(ShapeError, match="at least 1 row"):
        energy_distance(torch.zeros(0, 2), torch.zeros(4, 2))
    with pytest.raises(ShapeError, match="U-statistic"):
        energy_distance(torch.zeros(1, 2), torch.zeros(4, 2), unbiased=True)
    bad = torch.zeros(4, 2)
    bad[2, 0] = math.inf
    with pytest.raises(NonFiniteError, match=r"\(2, 0\)"):
        energy_distance(torch.zeros(3, 2), bad)
    monkeypatch.setenv("PYROBN_MEMORY_BUDGET", "1K")
    with pytest.raises(SizeLimitError, match="energy distance"):
        energy_distance(torch.zeros(40, 2), torch.zeros(40, 2))


# ---------------------------------------------------------------- likelihood figures
def test_nll_score_is_the_mean_with_its_standard_error():
    x = torch.zeros(4, 64)
    model = Resampler(x, nll=lambda x: torch.tensor([80.0, 82.0, 84.0, 86.0]))
    score = nll_score(model, x)
    assert score.nats == 83.0 and score.kind == "exact"
    assert_close(score.stderr, torch.tensor([80.0, 82, 84, 86]).std() / 2, rtol=1e-6)
    assert_close(score.bits_per_dim, 83.0 / (64 * math.log(2)), rtol=1e-12)
    assert "upper bound" not in str(score)
    assert bits_per_dim(64 * math.log(2), 64) == pytest.approx(1.0)


def test_a_model_without_likelihood_gets_none_and_a_broken_protocol_an_error():
    model = Resampler(torch.zeros(3, 2))
    model.nll_kind = "none"
    assert math.isnan(nll_score(model, torch.zeros(3, 2)).nats)
    model.nll_kind = "approximate"
    with pytest.raises(ConfigurationError, match="nll_kind"):
        nll_score(model, torch.zeros(3, 2))
    model.nll_kind = "exact"
    model._nll = lambda x: torch.tensor([1.0, math.nan, 2.0])
    with pytest.raises(NonFiniteError):
        nll_score(model, torch.zeros(3, 2))


def test_the_adapter_plugs_functions_into_the_protocol(classifier, data):
    gan = Adapter(lambda n, y=None, seed=None: data.x_train[:n].float(), n_classes=0)
    assert math.isnan(nll_score(gan, data.x_test).nats)
    assert sample_quality(gan, classifier, data.x_test, n=200)["fd"] >= 0
    vae = Adapter(gan.sample_fn, lambda x, y=None, seed=None: torch.full((len(x),), 96.4), "bound")
    assert nll_score(vae, data.x_test).nats == pytest.approx(96.4)
    with pytest.raises(ConfigurationError, match="nll_fn"):
        Adapter(gan.sample_fn, nll_kind="exact")
    with pytest.raises(ConfigurationError, match="nll_kind"):
        Adapter(gan.sample_fn, nll_kind="approx")


# ---------------------------------------------------------------- sample quality
def test_the_classifier_reads_digits(classifier, data):
    assert classifier.test_accuracy > 0.85
    assert classifier.features(data.x_test[:5]).shape == (5, 64)


def test_sample_quality_tells_real_digits_from_noise(classifier, data):
    real = Resampler(data.x_train, data.y_train, n_classes=10)
    noise = Resampler(torch.randint(0, 17, (1000, 64), generator=torch.Generator().manual_seed(0)))
    good = sample_quality(real, classifier, data.x_test, n=400, per_class=20, seed=0)
    bad = sample_quality(noise, classifier, data.x_test, n=400, seed=0)
    assert good["fd"] < bad["fd"] / 5
    assert good["class_accuracy"] > 0.85 and math.isnan(bad["class_accuracy"])


def test_evaluate_one_model_and_summarize_over_seeds(classifier, data):
    torch.manual_seed(0)
    model = pyrobn.AutoregressiveModel(64, "categorical", 17, network="made", hidden=16)
    rows = [
        evaluate(
            "arm",
            model,
            data.x_test[:50],
            classifier,
            n_samples=60,
            speed_samples=10,
            seed=s,
            timing=(2.0, 1.6),
        )
        for s in (0, 1)
    ]
    assert_close(rows[0].nll, -model.log_prob(data.x_test[:50]).mean(), rtol=1e-5)
    assert rows[0].nll_kind == "exact" and rows[0].epoch_ratio == pytest.approx(1.25)
    assert rows[0].samples_per_second > 0 and rows[0].fd > 0
    summary = summarize(rows)["arm"]
    assert summary["seeds"] == 2 and summary["nll_sd"] == pytest.approx(0.0, abs=1e-4)
    table = format_table(summarize(rows))
    assert "| arm |" in table and "(exact)" in table and "1.25" in table


def test_format_table_states_bounds_and_missing_likelihoods():
    rows = [
        BenchmarkRow("flow", 100.0, 1.0, "bound", 2.2, 5.0, math.nan, 300.0, 1.0, 1.0),
        BenchmarkRow("gan", math.nan, math.nan, "none", math.nan, 4.0, 0.97, 900.0, 1.0, 1.0),
    ]
    table = format_table(summarize(rows))
    assert "100.00 (bound)" in table and "| gan | none |" in table


# ---------------------------------------------------------------- speed
class FakeClock:
    """A perf_counter that moves only when a contender 'works' (no dependence on load)."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self):
        return self.now

    def work(self, seconds):
        self.now += seconds


def test_samples_per_second_times_the_sampler(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(pyrobn.evaluation, "time", clock)

    class Sampler:
        def sample(self, n, *, seed=None):
            clock.work(0.01 * n)  # 100 samples per second
            return torch.zeros(n, 2)

    assert samples_per_second(Sampler(), 50, repeats=3) == pytest.approx(100.0)


def test_samples_per_second_gives_each_draw_its_label():
    """Per-draw labels: the warm-up's few draws get as many labels (a conditional model
    refuses a label vector of another length)."""

    class Conditional:
        def sample(self, n, *, y=None, seed=None):
            assert y is not None and y.shape == (n,), (n, y.shape)
            return torch.zeros(n, 2)

    labels = torch.arange(20) % 10
    assert samples_per_second(Conditional(), 20, repeats=2, y=labels) > 0
    with pytest.raises(ShapeError):
        samples_per_second(Conditional(), 20, repeats=2, y=labels[:5])


def test_plain_torch_trainer_fits_and_compare_epoch_times_takes_medians(monkeypatch):
    x = torch.linspace(-1, 1, 64)[:, None]
    y = 3 * x + 1
    lin = torch.nn.Linear(1, 1)
    run = plain_torch_trainer(
        lin.parameters(), lambda i: ((lin(x[i]) - y[i]) ** 2).mean(), 64, 16, lr=0.1
    )
    losses = run(30)
    assert len(losses) == 30 * 4 and losses[-1] < losses[0] / 100
    clock = FakeClock()
    monkeypatch.setattr(pyrobn.evaluation, "time", clock)
    costs = iter([0.0, 0.0, 2.0, 6.0, 9.0, 5.0, 2.0, 6.0])  # warm-ups, then 3 repeats each

    def contender(epochs):
        clock.work(next(costs) * epochs)

    timing = compare_epoch_times({"fast": contender, "slow": contender}, epochs=2, repeats=3)
    assert timing.runs == {"fast": [2.0, 9.0, 2.0], "slow": [6.0, 5.0, 6.0]}
    assert timing.seconds == {"fast": 2.0, "slow": 6.0} and timing.ratio("slow") == 3.0
    with pytest.raises(ConfigurationError, match="base"):
        compare_epoch_times({"a": lambda e: None}, base="b")
