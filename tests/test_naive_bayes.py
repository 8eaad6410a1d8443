"""NaiveBayes (notes 2.1.3.2, eq. 10): scikit-learn equality, brute force, EM vs the
Pyro model/guide, semi-supervised gain, streaming, errors, persistence."""

from __future__ import annotations

import math

import numpy as np
import pyro
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pyro.infer import TraceEnum_ELBO
from scipy import stats
from sklearn.datasets import load_breast_cancer, load_digits, load_iris, load_wine
from sklearn.naive_bayes import BernoulliNB, CategoricalNB, GaussianNB

import pyrobn
from pyrobn.errors import (
    ConfigurationError,
    NonFiniteError,
    OutOfSupportError,
    PyrobnValueError,
    ShapeError,
)

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
    history = np.array(semi.em_history)  # EM never decreases the objective
    assert (np.diff(history) >= -1e-9 * np.abs(history[1:])).all()
    assert semi.em_history[-1] == pytest.approx(float(semi.log_joint(X_train, y_5)), rel=1e-12)


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
    cfg = dict(alpha=0.5, class_alpha=1.0, var_smoothing=0.0, n_categories=[4, 3])
    labelled = y_missing >= 0
    start = pyrobn.NaiveBayes(kinds, **cfg).fit(X[labelled], y_missing[labelled])
    elbo, grad_start = elbo_and_grads(start, X, y_missing)
    assert elbo == pytest.approx(float(start.log_joint(X, y_missing)), rel=1e-10)
    em = pyrobn.NaiveBayes(kinds, **cfg).fit(X, y_missing, tol=1e-14)
    elbo, grad_em = elbo_and_grads(em, X, y_missing)
    assert elbo == pytest.approx(em.em_history[-1], rel=1e-10)
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
    pyro.set_rng_seed(0)
    draws = np.array(
        [-elbo.loss(nb.model, nb.guide, X, y_missing, batch_size=10) for _ in range(60)]
    )
    assert abs(draws.mean() - full) < 4 * draws.std(ddof=1) / math.sqrt(len(draws))
    assert draws.std() > 0  # the minibatches do differ


def test_svi_fit_climbs_to_the_em_optimum():
    X, y, kinds = mixed_data()
    y_missing = hide_labels(y, 0.2)
    cfg = dict(alpha=0.5, class_alpha=1.0, var_smoothing=0.0, n_categories=[4, 3])
    em = pyrobn.NaiveBayes(kinds, **cfg).fit(X, y_missing)
    svi = pyrobn.NaiveBayes(kinds, **cfg).fit(X, y_missing, method="svi", steps=60, lr=0.1)
    losses = svi.svi_history.losses
    gap_start = em.em_history[-1] + losses[0]
    gap_end = em.em_history[-1] - float(svi.log_joint(X, y_missing))
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
