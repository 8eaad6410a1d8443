"""pyrobn.datasets.swiss_roll and pyrobn.datasets.digits (notes Figura 13; the VAE's data)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits, make_swiss_roll

import pyrobn
from pyrobn.errors import ConfigurationError, NonFiniteError, ShapeError, SizeLimitError


def test_swiss_roll_is_sklearns_roll(device):
    x, t = pyrobn.datasets.swiss_roll(500, noise=0.1, seed=3, device=device)
    ref_x, ref_t = make_swiss_roll(500, noise=0.1, random_state=3)
    assert x.shape == (500, 3) and t.shape == (500,)
    assert x.device.type == device.type and x.dtype == torch.float32
    np.testing.assert_allclose(x.cpu().numpy(), ref_x, rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(t.cpu().numpy(), ref_t, rtol=1e-6)


def test_swiss_roll_without_noise_lies_on_the_roll():
    x, t = pyrobn.datasets.swiss_roll(2000, noise=0.0, seed=0, dtype=torch.float64, device="cpu")
    assert bool((t >= 1.5 * math.pi).all()) and bool((t <= 4.5 * math.pi).all())
    torch.testing.assert_close(x[:, 0], t * torch.cos(t))
    torch.testing.assert_close(x[:, 2], t * torch.sin(t))
    assert bool((x[:, 1] >= 0).all()) and bool((x[:, 1] <= 21).all())


def test_swiss_roll_seeds():
    a, _ = pyrobn.datasets.swiss_roll(100, seed=1, device="cpu")
    b, _ = pyrobn.datasets.swiss_roll(100, seed=1, device="cpu")
    c, _ = pyrobn.datasets.swiss_roll(100, seed=2, device="cpu")
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n": 0},
        {"n": 2.5},
        {"noise": -0.1},
        {"noise": math.nan},
        {"noise": "0.1"},
        {"noise": True},
        {"seed": -1},
        {"seed": 2.5},
        {"seed": "0"},
        {"seed": 2**40},
    ],
)
def test_swiss_roll_bad_input(kwargs):
    with pytest.raises(ConfigurationError):
        pyrobn.datasets.swiss_roll(**{"n": 10, **kwargs})


def test_swiss_roll_past_the_memory_budget_says_so():
    with pytest.raises(SizeLimitError, match="swiss roll of 1000000000000 points"):
        pyrobn.datasets.swiss_roll(10**12)


def test_digits_fixed_stratified_split(device):
    x_train, y_train, x_test, y_test = pyrobn.datasets.digits(device=device)
    assert x_train.shape == (1437, 64) and x_test.shape == (360, 64)
    assert y_train.shape == (1437,) and y_test.shape == (360,)
    assert x_train.device.type == device.type and y_train.dtype == torch.long
    assert float(x_train.min()) == 0.0 and float(x_train.max()) == 1.0
    # the union of the two parts is the whole bundled data set, each image once
    data = load_digits()
    full = np.concatenate([x_train.cpu().numpy(), x_test.cpu().numpy()]) * 16
    labels = np.concatenate([y_train.cpu().numpy(), y_test.cpu().numpy()])
    order = np.lexsort(np.c_[full, labels].T)
    ref_order = np.lexsort(np.c_[data.data, data.target].T)
    np.testing.assert_allclose(full[order], data.data[ref_order], atol=1e-4)
    np.testing.assert_array_equal(labels[order], data.target[ref_order])
    # stratified: each class holds its share of the test set up to rounding
    counts = np.bincount(y_test.cpu().numpy(), minlength=10)
    expected = np.bincount(data.target, minlength=10) * 0.2
    assert np.all(np.abs(counts - expected) <= 1)
    # fixed: a second call gives the same split
    again = pyrobn.datasets.digits(device=device)
    assert torch.equal(again.x_test, x_test) and torch.equal(again.y_train, y_train)


def test_digits_binarized():
    grey = pyrobn.datasets.digits(device="cpu")
    binary = pyrobn.datasets.digits(binarize=True, device="cpu")
    assert set(torch.unique(binary.x_train).tolist()) == {0.0, 1.0}
    assert torch.equal(binary.x_train, (grey.x_train > 0.5).float())
    assert torch.equal(binary.y_test, grey.y_test)


@pytest.mark.parametrize("threshold", [0.0, 1.0, -0.5])
def test_digits_bad_threshold(threshold):
    with pytest.raises(ConfigurationError):
        pyrobn.datasets.digits(binarize=True, threshold=threshold)


def test_best_direction_spearman_finds_the_ordering_direction():
    rng = np.random.default_rng(0)
    t, t_test = rng.uniform(0, 10, 400), rng.uniform(0, 10, 300)
    direction = np.array([np.cos(2.0), np.sin(2.0)])
    across = np.array([-np.sin(2.0), np.cos(2.0)])

    def latent(t):  # monotone in t along `direction`, noise across it
        return np.outer(np.exp(t / 5), direction) + np.outer(rng.normal(0, 5, t.size), across)

    score = pyrobn.datasets.best_direction_spearman(latent(t), t, latent(t_test), t_test)
    assert score > 0.999
    # a latent that does not depend on t scores near 0 (|rho| of 300 pairs: sd ~ 0.058)
    noise = pyrobn.datasets.best_direction_spearman(
        rng.normal(size=(400, 2)), t, torch.randn(300, 2), torch.as_tensor(t_test)
    )
    assert noise < 0.25
    # a spiral, the folded chart of a rolled-up VAE, has no ordering direction
    spiral = np.stack([t * np.cos(t), t * np.sin(t)], 1)
    spiral_test = np.stack([t_test * np.cos(t_test), t_test * np.sin(t_test)], 1)
    assert pyrobn.datasets.best_direction_spearman(spiral, t, spiral_test, t_test) < 0.5


def test_best_direction_spearman_refuses_bad_input():
    z, t = np.zeros((5, 2)), np.arange(5.0)
    with pytest.raises(ShapeError, match=r"t_test must have shape \(4,\), got \(5,\)"):
        pyrobn.datasets.best_direction_spearman(z, t, z[:4], t)
    with pytest.raises(ShapeError, match=r"z_fit must have shape \('\*', '\*'\), got \(5,\)"):
        pyrobn.datasets.best_direction_spearman(t, t, z, t)
    with pytest.raises(ShapeError, match=r"z_test must have shape \('\*', 2\), got \(5, 3\)"):
        pyrobn.datasets.best_direction_spearman(z, t, np.zeros((5, 3)), t)
    with pytest.raises(ShapeError, match="needs >= 3 rows; z_fit has 2"):
        pyrobn.datasets.best_direction_spearman(z[:2], t[:2], z, t)
    bad = t.copy()
    bad[3] = np.nan
    with pytest.raises(NonFiniteError, match=r"t_fit .*index \(3,\)"):
        pyrobn.datasets.best_direction_spearman(z, bad, z, t)
