"""NaiveBayes (notes 2.1.3.2, eq. 10): scikit-learn equality, brute force, EM vs the
Pyro model/guide, semi-supervised gain, streaming, constant features, the estimator
contract (concentration, run_em, fit_result_, graph), errors, persistence."""

from __future__ import annotations

import math

import numpy as np
import pyro
import pytest
import torch
from common import assert_close
from hypothesis import given, settings
from hypothesis import strategies as st
from pyro.infer import TraceEnum_ELBO
from scipy import stats
from sklearn.datasets import load_breast_cancer, load_digits, load_iris, load_wine
from sklearn.naive_bayes import BernoulliNB, CategoricalNB, GaussianNB

import pyrobn
from pyrobn.errors import (
    CheckpointError,
    ConfigurationError,
    NonFiniteError,
    OutOfSupportError,
    PyrobnValueError,
    ShapeError,
    SizeLimitError,
    ZeroProbabilityEvidence,
)
from pyrobn.infer.em import converged
from pyrobn.random import seeded

LOADERS = {"iris": load_iris, "wine": load_wine, "breast_cancer": load_breast_cancer,
           "digits": load_digits}  # fmt: skip


def split(name: str, seed: int = 0):
    """A seeded 2/3 - 1/3 split of a scikit-learn bundled dataset."""
    X, y = LOADERS[name](return_X_y=True)
    perm = np.random.default_rng(seed).permutation(len(y))
    cut = 2 * len(y) // 3
    return X[perm[:cut]], y[perm[:cut]], X[perm[cut:]], y[perm[cut:]]


def as_np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


# ------------------------------------------------------------------ scikit-learn
@pytest.mark.parametrize("name", list(LOADERS))
@pytest.mark.parametrize("var_smoothing", [1e-9, 1e-3])
def test_gaussian_equals_sklearn(name, var_smoothing, device):
    X, y, X_test, _ = split(name)
    ref = GaussianNB(var_smoothing=var_smoothing).fit(X, y)
    nb = pyrobn.NaiveBayes("gaussian", var_smoothing=var_smoothing)
    nb.fit(torch.as_tensor(X, device=device), torch.as_tensor(y, device=device))
    assert nb.predict_proba(X_test).device.type == device.type
    np.testing.assert_allclose(as_np(nb.predict_proba(X_test)), ref.predict_proba(X_test),
                               atol=1e-6, rtol=0)  # fmt: skip
    np.testing.assert_allclose(as_np(nb.g_var), ref.var_, rtol=1e-9)
    np.testing.assert_allclose(float(nb.epsilon), ref.epsilon_, rtol=1e-12)
    np.testing.assert_array_equal(as_np(nb.predict(X_test)), ref.predict(X_test))


@pytest.mark.parametrize("alpha", [1.0, 0.3])
@pytest.mark.parametrize("name", ["digits", "breast_cancer"])
def test_bernoulli_equals_sklearn(name, alpha, device):
    X, y, X_test, _ = split(name)
    threshold = float(np.median(X))  # digits: ink or not; breast cancer: a global cut
    ref = BernoulliNB(alpha=alpha, binarize=threshold).fit(X, y)
    nb = pyrobn.NaiveBayes("bernoulli", alpha=alpha, binarize=threshold)
    nb.fit(torch.as_tensor(X, device=device), torch.as_tensor(y, device=device))
    np.testing.assert_allclose(as_np(nb.predict_proba(X_test)), ref.predict_proba(X_test),
                               atol=1e-6, rtol=0)  # fmt: skip
    # already binary data without ``binarize``: the same model
    nb01 = pyrobn.NaiveBayes("bernoulli", alpha=alpha).fit(X > threshold, y)
    np.testing.assert_allclose(as_np(nb01.predict_proba(X_test > threshold)),
                               ref.predict_proba(X_test), atol=1e-6, rtol=0)  # fmt: skip


@pytest.mark.parametrize("alpha", [1.0, 0.25])
@pytest.mark.parametrize("name", ["digits", "wine"])
def test_categorical_equals_sklearn(name, alpha, device):
    X, y, X_test, _ = split(name)
    if name == "wine":  # discretise every feature into 5 quantile bins
        edges = np.quantile(X, [0.2, 0.4, 0.6, 0.8], axis=0)
        X = np.stack([np.searchsorted(edges[:, d], X[:, d]) for d in range(X.shape[1])], 1)
        X_test = np.stack(
            [np.searchsorted(edges[:, d], X_test[:, d]) for d in range(X.shape[1])], 1
        )
    X, X_test = X.astype(int), X_test.astype(int)
    X_test = np.minimum(X_test, X.max(0))  # categories unseen in training have no table
    ref = CategoricalNB(alpha=alpha).fit(X, y)
    nb = pyrobn.NaiveBayes("categorical", alpha=alpha).fit(torch.as_tensor(X, device=device), y)
    np.testing.assert_allclose(as_np(nb.predict_proba(X_test)), ref.predict_proba(X_test),
                               atol=1e-6, rtol=0)  # fmt: skip


def test_mixed_features_equal_sum_of_sklearn_models():
    """A per-feature list: log p(x, y) = log p(y) + the three kinds' sums (eq. 10)."""
    X, y, X_test, _ = split("wine")
    Xb, Xb_test = (X[:, 3:6] > np.median(X[:, 3:6], 0)), (X_test[:, 3:6] > np.median(X[:, 3:6], 0))
    edges = np.quantile(X[:, 6:9], [0.25, 0.5, 0.75], axis=0)
    cat = lambda Z: np.stack([np.searchsorted(edges[:, d], Z[:, d]) for d in range(3)], 1)  # noqa: E731
    Xc, Xc_test = cat(X[:, 6:9]), np.minimum(cat(X_test[:, 6:9]), cat(X[:, 6:9]).max(0))
    full = np.concatenate([X[:, :3], Xb, Xc], 1)
    full_test = np.concatenate([X_test[:, :3], Xb_test, Xc_test], 1)
    kinds = ["gaussian"] * 3 + ["bernoulli"] * 3 + ["categorical"] * 3
    perm = np.random.default_rng(1).permutation(9)  # interleave the kinds
    nb = pyrobn.NaiveBayes([kinds[i] for i in perm], alpha=0.5, var_smoothing=0.0)
    nb.fit(full[:, perm], y)
    refs = [GaussianNB(var_smoothing=0.0).fit(X[:, :3], y), BernoulliNB(alpha=0.5).fit(Xb, y),
            CategoricalNB(alpha=0.5).fit(Xc, y)]  # fmt: skip
    parts = [X_test[:, :3], Xb_test, Xc_test]
    log_prior = np.log(np.bincount(y) / len(y))
    expected = sum(r.predict_joint_log_proba(p) for r, p in zip(refs, parts)) - 2 * log_prior
    np.testing.assert_allclose(as_np(nb.joint_log_likelihood(full_test[:, perm])), expected,
                               rtol=1e-10)  # fmt: skip
    assert nb.kinds == [kinds[i] for i in perm]


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(6, 30),
    n_classes=st.integers(1, 3),
    alpha=st.floats(0.1, 3.0),
)
def test_posterior_equals_brute_force(seed, n, n_classes, alpha):
    """p(y | x) = p(y) prod_d p(x_d | y) / sum_c (...), each factor from scipy's densities."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % n_classes  # every class present
    X = np.stack([rng.normal(size=n) * 2 + y, rng.integers(0, 2, n), rng.integers(0, 3, n)], 1)
    nb = pyrobn.NaiveBayes(["gaussian", "bernoulli", "categorical"], alpha=alpha,
                           var_smoothing=0.0, n_categories=[3])  # fmt: skip
    nb.fit(X, y)
    joint = np.zeros((n, n_classes))
    for c in range(n_classes):
        rows = X[y == c]
        mu, var = rows[:, 0].mean(), rows[:, 0].var()
        p1 = (rows[:, 1].sum() + alpha) / (len(rows) + 2 * alpha)
        pc = (np.bincount(rows[:, 2].astype(int), minlength=3) + alpha) / (len(rows) + 3 * alpha)
        joint[:, c] = (
            np.log(len(rows) / n)
            + stats.norm(mu, math.sqrt(var)).logpdf(X[:, 0])
            + stats.bernoulli(p1).logpmf(X[:, 1])
            + np.log(pc[X[:, 2].astype(int)])
        )
    posterior = np.exp(joint - np.logaddexp.reduce(joint, axis=1, keepdims=True))
    np.testing.assert_allclose(as_np(nb.predict_proba(X)), posterior, atol=1e-9)
    np.testing.assert_allclose(as_np(nb.log_prob(X, y)), joint[np.arange(n), y], rtol=1e-9)
    np.testing.assert_allclose(as_np(nb.log_prob(X)), np.logaddexp.reduce(joint, axis=1),
                               rtol=1e-9)  # fmt: skip


# ---------------------------------------------------------------- streaming
@pytest.mark.parametrize("kind", ["gaussian", "bernoulli", "categorical"])
def test_partial_fit_streams_to_the_full_fit(kind, device):
    X, y, X_test, _ = split("digits")
    if kind == "bernoulli":
        X, X_test = X > 4, X_test > 4
    full = pyrobn.NaiveBayes(kind, n_categories=17).fit(torch.as_tensor(X, device=device), y)
    stream = pyrobn.NaiveBayes(kind, n_categories=17)
    for rows in np.array_split(np.arange(len(y)), 7):
        stream.partial_fit(torch.as_tensor(X[rows], device=device), y[rows])
    np.testing.assert_allclose(as_np(stream.predict_proba(X_test)),
                               as_np(full.predict_proba(X_test)), atol=1e-8)  # fmt: skip
    np.testing.assert_allclose(as_np(stream.log_class_prior), as_np(full.log_class_prior),
                               rtol=1e-12)  # fmt: skip


# --------------------------------------------------- semi-supervised learning
def synthetic(n: int, seed: int = 0, n_classes: int = 5, n_features: int = 20):
    """Data drawn from a Gaussian naive Bayes model (so the model fits)."""
    g = torch.Generator().manual_seed(seed)
    means = 0.5 * torch.randn(n_classes, n_features, generator=g, dtype=torch.float64)
    scales = 0.5 + torch.rand(n_classes, n_features, generator=g, dtype=torch.float64)
    y = torch.randint(0, n_classes, (n,), generator=g)
    return means[y] + scales[y] * torch.randn(n, n_features, generator=g, dtype=torch.float64), y


def hide_labels(y: torch.Tensor, keep: float, seed: int = 100) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    hidden = y.clone()
    hidden[torch.randperm(len(y), generator=g)[int(keep * len(y)) :]] = -1
    return hidden


def test_semi_supervised_beats_supervised_on_5_percent(device):
    X, y = synthetic(2000)
    X, y = X.to(device), y.to(device)
    X_train, y_train, X_test, y_test = X[:1000], y[:1000], X[1000:], y[1000:]
    y_5 = hide_labels(y_train, 0.05).to(device)
    labelled = y_5 >= 0
    supervised = pyrobn.NaiveBayes().fit(X_train[labelled], y_5[labelled])
    semi = pyrobn.NaiveBayes(n_classes=5).fit(X_train, y_5)
    oracle = pyrobn.NaiveBayes().fit(X_train, y_train)
    acc_sup, acc_semi = supervised.score(X_test, y_test), semi.score(X_test, y_test)
    # measured: 0.767 with 50 labels, 0.954 with them and 950 unlabelled rows, 0.958 all labels
    assert acc_semi > acc_sup + 0.1
    assert acc_semi > oracle.score(X_test, y_test) - 0.02
    result = semi.fit_result_  # run_em's record
    assert result.method == "em" and result.objective_name == "log_joint" and result.converged
    history = np.array(result.objective)  # EM never decreases the objective
    assert (np.diff(history) >= -1e-9 * np.abs(history[1:])).all()
    # the loop stopped by the package's one rule (the last entry is the returned state's)
    assert converged(history[-3], history[-2], 1e-10)
    assert result.objective[-1] == pytest.approx(float(semi.log_joint(X_train, y_5)), rel=1e-12)


def mixed_data(n: int = 120, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    Xg = torch.randn(n, 2, generator=g, dtype=torch.float64) + 1.5 * y[:, None]
    Xb = (torch.rand(n, 2, generator=g, dtype=torch.float64) < 0.2 + 0.3 * y[:, None]).double()
    Xc = torch.remainder(y[:, None] + torch.randint(0, 2, (n, 2), generator=g), 4).double()
    Xc[:, 1] = Xc[:, 1].clamp_max(2)
    kinds = ["gaussian", "bernoulli", "categorical"] * 2
    X = torch.stack([Xg[:, 0], Xb[:, 0], Xc[:, 0], Xg[:, 1], Xb[:, 1], Xc[:, 1]], 1)
    return X, y, kinds


def elbo_and_grads(nb: pyrobn.NaiveBayes, X, y):
    """TraceEnum_ELBO of the model/guide pair at the guide's current values."""
    pyro.clear_param_store()
    loss = TraceEnum_ELBO(max_plate_nesting=nb.max_plate_nesting).differentiable_loss(
        nb.model, nb.guide, X, y
    )
    store = pyro.get_param_store()
    params = [store[name].unconstrained() for name in store.keys()]
    grads = torch.autograd.grad(loss, params)
    return -float(loss.detach()), max(float(g.abs().max()) for g in grads)


def test_model_guide_elbo_is_the_em_objective(device):
    """With point-mass guides the ELBO (labels enumerated) equals ``log_joint`` at any
    parameters, and its gradient vanishes at the EM optimum."""
    X, y, kinds = mixed_data()
    X, y_missing = X.to(device), hide_labels(y, 0.2).to(device)
    cfg = dict(alpha=0.5, class_concentration=2.0, var_smoothing=0.0, n_categories=[4, 3])
    labelled = y_missing >= 0
    start = pyrobn.NaiveBayes(kinds, **cfg).fit(X[labelled], y_missing[labelled])
    elbo, grad_start = elbo_and_grads(start, X, y_missing)
    assert elbo == pytest.approx(float(start.log_joint(X, y_missing)), rel=1e-10)
    em = pyrobn.NaiveBayes(kinds, **cfg).fit(X, y_missing, tol=1e-14)
    elbo, grad_em = elbo_and_grads(em, X, y_missing)
    assert elbo == pytest.approx(em.fit_result_.final_objective, rel=1e-10)
    assert grad_start > 1.0
    assert grad_em < 1e-4 * grad_start


def test_minibatch_elbo_is_unbiased():
    """Subsampled plates scale the likelihood by N / batch: the mean of 60 minibatch ELBOs
    lies within 4 standard errors of the full ELBO."""
    X, y = synthetic(80, seed=5, n_classes=2, n_features=3)
    y_missing = hide_labels(y, 0.5)
    nb = pyrobn.NaiveBayes(n_classes=2).fit(X, y_missing)
    elbo = TraceEnum_ELBO(max_plate_nesting=1)
    full = -elbo.loss(nb.model, nb.guide, X, y_missing)
    with seeded(0):
        draws = np.array(
            [-elbo.loss(nb.model, nb.guide, X, y_missing, batch_size=10) for _ in range(60)]
        )
    assert abs(draws.mean() - full) < 4 * draws.std(ddof=1) / math.sqrt(len(draws))
    assert draws.std() > 0  # the minibatches do differ


def test_svi_fit_climbs_to_the_em_optimum():
    X, y, kinds = mixed_data()
    y_missing = hide_labels(y, 0.2)
    cfg = dict(alpha=0.5, class_concentration=2.0, var_smoothing=0.0, n_categories=[4, 3])
    em = pyrobn.NaiveBayes(kinds, **cfg).fit(X, y_missing)
    svi = pyrobn.NaiveBayes(kinds, **cfg).fit(X, y_missing, method="svi", steps=60, lr=0.1)
    assert svi.fit_result_.method == "svi" and svi.fit_result_.n_iter == 60
    losses = svi.fit_result_.history.losses
    gap_start = em.fit_result_.final_objective + losses[0]
    gap_end = em.fit_result_.final_objective - float(svi.log_joint(X, y_missing))
    assert gap_start > 5.0
    assert -1e-6 < gap_end < 0.05 * gap_start
    assert float((svi.predict_proba(X) - em.predict_proba(X)).abs().max()) < 0.05


def test_no_labels_at_all_clusters():
    X, y = synthetic(400, seed=3, n_classes=2, n_features=5)
    nb = pyrobn.NaiveBayes(n_classes=2).fit(X, -torch.ones_like(y))
    agreement = float((nb.predict(X) == y).double().mean())
    oracle = pyrobn.NaiveBayes().fit(X, y).score(X, y)  # 0.885 here
    # the clusters are the classes, up to a swap of the two labels
    assert max(agreement, 1 - agreement) > oracle - 0.03


# -------------------------------------------------------------- bad input
def test_errors_name_the_fault():
    X, y, kinds = mixed_data(30)
    nb = pyrobn.NaiveBayes(kinds)
    with pytest.raises(ConfigurationError, match="not fitted"):
        nb.predict(X)
    bad = X.clone()
    bad[4, 3] = math.nan
    with pytest.raises(NonFiniteError, match=r"\(4, 3\)"):
        nb.fit(bad, y)
    with pytest.raises(ShapeError, match=r"length|shape"):
        nb.fit(X, y[:-1])
    with pytest.raises(ShapeError, match="kinds"):
        nb.fit(X[:, :4], y)
    with pytest.raises(OutOfSupportError, match=r"y\[2\] = -2"):
        nb.fit(X, torch.where(torch.arange(30) == 2, -2, y))
    with pytest.raises(OutOfSupportError, match=r"y\[0\] = 0.5"):
        nb.fit(X, torch.full((30,), 0.5))
    with pytest.raises(OutOfSupportError, match=r"Bernoulli feature 1 .* row 7 holds 0.5"):
        nb.fit(torch.where((torch.arange(30) == 7)[:, None] & (torch.arange(6) == 1), 0.5, X), y)
    with pytest.raises(OutOfSupportError, match=r"y\[5\] = 7 is out of range.*3 classes"):
        pyrobn.NaiveBayes(kinds, n_classes=3).fit(X, torch.where(torch.arange(30) == 5, 7, y))
    nb.fit(X, y)
    with pytest.raises(ShapeError, match=r"shape \('\*', 6\), got \(30, 5\)"):
        nb.predict(X[:, :5])
    with pytest.raises(ShapeError, match="matrix"):
        nb.predict(X[0])
    outside = X.clone()
    outside[3, 2] = 9
    with pytest.raises(OutOfSupportError, match=r"categorical feature 2 .* row 3 holds 9"):
        nb.predict_proba(outside)
    with pytest.raises(OutOfSupportError, match=r"y\[1\] = 3 is out of range"):
        nb.partial_fit(X[:2], torch.tensor([0, 3]))
    with pytest.raises(ConfigurationError, match="unknown feature kind 'poisson'"):
        pyrobn.NaiveBayes(["gaussian", "poisson"])
    with pytest.raises(ConfigurationError, match="alpha"):
        pyrobn.NaiveBayes(alpha=-1.0)
    with pytest.raises(ConfigurationError, match="concentration"):
        pyrobn.NaiveBayes(concentration=0.5)
    with pytest.raises(ConfigurationError, match="not both"):
        pyrobn.NaiveBayes(alpha=1.0, concentration=2.0)
    with pytest.raises(ConfigurationError, match="complex"):
        pyrobn.NaiveBayes().fit(np.ones((3, 2)) + 1j, [0, 1, 0])
    with pytest.raises(ConfigurationError, match="integer labels"):
        pyrobn.NaiveBayes().fit(np.ones((3, 2)), ["a", "b", "a"])
    with pytest.raises(SizeLimitError, match="NaiveBayes tables"):
        pyrobn.NaiveBayes().fit(np.ones((2, 2)), [0, 10**12])
    with pytest.raises(ConfigurationError, match="method"):
        nb.fit(X, y, method="gibbs")
    semi = pyrobn.NaiveBayes(kinds, n_classes=3).fit(X, hide_labels(y, 0.5))
    with pytest.raises(ConfigurationError, match="partial_fit"):
        semi.partial_fit(X, y)
    assert issubclass(OutOfSupportError, PyrobnValueError)


# ------------------------------------------------------------- persistence
def test_save_load_round_trip(tmp_path, device):
    X, y, kinds = mixed_data(60)
    nb = pyrobn.NaiveBayes(kinds, alpha=0.7).fit(X.to(device), y.to(device))
    nb.save(tmp_path / "nb.pt")
    back = pyrobn.NaiveBayes.load(tmp_path / "nb.pt", map_location=device)
    assert torch.equal(back.predict_proba(X), nb.predict_proba(X))
    assert back.kinds == kinds and back.n_classes == 3
    back.partial_fit(X[:10], y[:10])  # the statistics came back too
    nb.partial_fit(X[:10], y[:10])
    assert torch.equal(back.predict_proba(X), nb.predict_proba(X))
    # a loaded table is validated: a class prior that is no distribution is refused
    state = torch.load(tmp_path / "nb.pt", weights_only=True)
    state["state_dict"]["log_class_prior"] = torch.zeros(3, dtype=torch.float64)
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="class prior sums to 3"):
        pyrobn.NaiveBayes.load(tmp_path / "bad.pt")


# --------------------------------------------------------- constant features
def test_all_constant_gaussian_features_give_the_class_prior_not_nan():
    """scikit-learn's epsilon is 0 here and its predict_proba is NaN; pyrobn's constant
    features are uninformative: p(y | x) = p(y), at the data and elsewhere."""
    X = np.full((6, 2), 3.0)
    y = np.array([0, 0, 0, 0, 1, 1])
    nb = pyrobn.NaiveBayes().fit(X, y)
    expected = np.tile([4 / 6, 2 / 6], (3, 1))
    assert_close(nb.predict_proba(np.array([[3.0, 3.0], [0.0, 7.0], [3.0, -1.0]])), expected)
    # beside an informative feature, the constant one cancels out
    Xm = np.column_stack([np.full(40, 2.0), np.random.default_rng(0).normal(size=40)])
    ym = (Xm[:, 1] > 0).astype(int)
    both = pyrobn.NaiveBayes().fit(Xm, ym)
    alone = pyrobn.NaiveBayes().fit(Xm[:, 1:], ym)
    q = np.column_stack([np.full(5, 2.0), np.linspace(-1, 1, 5)])
    assert_close(both.predict_proba(q), alone.predict_proba(q[:, 1:]), atol=1e-6)
    # and against scikit-learn where its answer is defined (var_smoothing > 0, not all constant)
    ref = GaussianNB().fit(Xm, ym)
    assert_close(both.predict_proba(q), ref.predict_proba(q), atol=1e-9)


def test_a_zero_variance_with_var_smoothing_zero_is_a_clear_error():
    X = np.column_stack([np.arange(6.0), np.full(6, 1.5)])
    with pytest.raises(ConfigurationError, match=r"feature 1 has zero variance in class 0.*1\.5"):
        pyrobn.NaiveBayes(var_smoothing=0.0).fit(X, [0, 0, 0, 1, 1, 1])
    # with the default smoothing the same data fit, and the posteriors are finite
    nb = pyrobn.NaiveBayes().fit(X, [0, 0, 0, 1, 1, 1])
    assert bool(torch.isfinite(nb.predict_proba(X)).all())


# ------------------------------------------------------ the estimator contract
@pytest.mark.parametrize("c", [1.25, 1.5, 3.0])
def test_concentration_is_alpha_plus_one(c):
    """One meaning: MAP adds concentration - 1 pseudo-counts (scikit-learn's alpha)."""
    X, y, X_test, _ = split("digits")
    Xb, Xb_test = X > 4, X_test > 4
    ref = BernoulliNB(alpha=c - 1, force_alpha=True).fit(Xb, y)
    nb = pyrobn.NaiveBayes("bernoulli", concentration=c).fit(Xb, y)
    assert_close(nb.predict_proba(Xb_test), ref.predict_proba(Xb_test), atol=1e-9)
    alias = pyrobn.NaiveBayes("bernoulli", c - 1).fit(Xb, y)  # scikit-learn's alpha, positional
    assert torch.equal(alias.predict_proba(Xb_test), nb.predict_proba(Xb_test))
    assert nb.config["concentration"] == c and alias.config == nb.config
    # the class prior: class_concentration c adds c - 1 to every class count
    prior = pyrobn.NaiveBayes("bernoulli", class_concentration=c).fit(Xb, y)
    counts = np.bincount(y)
    assert_close(prior.log_class_prior.exp(), (counts + c - 1) / (len(y) + 10 * (c - 1)))
    with pytest.warns(DeprecationWarning, match="class_concentration"):
        old = pyrobn.NaiveBayes("bernoulli", class_alpha=c - 1).fit(Xb, y)
    assert torch.equal(old.log_class_prior, prior.log_class_prior)


def test_closed_form_record_and_deprecated_histories():
    X, y, kinds = mixed_data()
    nb = pyrobn.NaiveBayes(kinds, alpha=0.5, var_smoothing=0.0, n_categories=[4, 3])
    assert nb.fit(X, y) is nb
    result = nb.fit_result_
    assert result.method == "counts" and result.n_iter == 1
    # the log joint from the statistics equals the one from a pass over the data
    assert result.final_objective == pytest.approx(float(nb.log_joint(X, y)), rel=1e-12)
    nb.partial_fit(X[:7], y[:7])
    assert nb.fit_result_.final_objective == pytest.approx(
        float(nb.log_joint(torch.cat([X, X[:7]]), torch.cat([y, y[:7]]))), rel=1e-12
    )
    semi = pyrobn.NaiveBayes(kinds, n_categories=[4, 3]).fit(X, hide_labels(y, 0.3))
    with pytest.warns(DeprecationWarning, match="fit_result_"):
        assert semi.em_history == semi.fit_result_.objective
    with pytest.warns(DeprecationWarning, match="fit_result_"):
        assert semi.svi_history is None


def test_em_restarts_and_seed_leave_the_caller_alone():
    X, y = synthetic(300, seed=3, n_classes=2, n_features=5)
    before = torch.get_rng_state()
    nb = pyrobn.NaiveBayes(n_classes=2).fit(X, -torch.ones_like(y), restarts=3, seed=1)
    assert torch.equal(torch.get_rng_state(), before)
    finals = [trace[-1] for trace in nb.fit_result_.restarts]
    assert len(finals) == 3 and nb.fit_result_.best_restart == int(np.argmax(finals))
    again = pyrobn.NaiveBayes(n_classes=2).fit(X, -torch.ones_like(y), restarts=3, seed=1)
    assert torch.equal(again.predict_proba(X), nb.predict_proba(X))


def test_graph_is_figura_3_and_the_parameter_count():
    X, y, kinds = mixed_data(60)
    nb = pyrobn.NaiveBayes(kinds, n_categories=[4, 3]).fit(X, y)
    g = nb.graph()
    features = [f"x{d}" for d in range(1, 7)]
    assert all(g.parents(f) == ("y",) for f in features)
    assert g.node("y").discrete and g.node("x1").role == "observed"
    assert not g.node("x1").discrete and g.node("x2").discrete  # Gaussian, Bernoulli
    # the naive assumption: x_i and x_j independent given y (d-separation), not without
    assert g.d_separated("x1", "x4", given=["y"]) and not g.d_separated("x1", "x4")
    # C - 1 + Gaussian 2C + Bernoulli C + categorical C (V - 1), per feature
    assert nb.n_parameters == 2 + 2 * (2 * 3) + 2 * 3 + 3 * 3 + 3 * 2
    assert pyrobn.NaiveBayes().graph().plates["features"] == (["x_d"], "D")
    discrete = pyrobn.NaiveBayes(["bernoulli"] * 3 + ["categorical"]).fit(
        np.array([[0, 1, 1, 2], [1, 0, 1, 0], [1, 1, 0, 1]]), [0, 1, 1]
    )
    assert discrete.n_parameters == 1 + 2 * 3 + 2 * 2
    assert discrete.n_parameters_joint == 2 * 2**3 * 3 - 1


def test_unsmoothed_zero_probability_is_named_not_nan():
    X = np.array([[0, 1], [1, 1], [0, 0], [1, 0]])
    nb = pyrobn.NaiveBayes("categorical", concentration=1.0, n_categories=3).fit(X, [0, 0, 1, 1])
    with pytest.raises(ZeroProbabilityEvidence, match="row 1"):
        nb.predict_proba(np.array([[0, 0], [2, 1]]))
