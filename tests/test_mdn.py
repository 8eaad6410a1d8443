"""MixtureDensityNetwork on the inverse-sine problem (lecture: MDN)."""

from __future__ import annotations

import functools
import math

import numpy as np
import pyro
import pytest
import torch
from scipy.stats import norm

from pyrobn import MixtureDensityNetwork
from pyrobn.datasets import inverse_sine
from pyrobn.errors import ConfigurationError, NonFiniteError, ShapeError
from pyrobn.models.mdn import polynomial_gaussian_nll

# one worker trains the shared models (pytest-xdist --dist loadgroup)
pytestmark = pytest.mark.xdist_group(name="mdn")


@pytest.fixture(scope="module")
def trained():
    return _train_models()


@functools.lru_cache(maxsize=1)
def _train_models():
    """A 3-component MDN and a 1-component one (the best single-Gaussian regressor)."""
    pyro.clear_param_store()
    x, t = inverse_sine(600, seed=0, device="cpu")
    models = {}
    for k in (3, 1):
        m = MixtureDensityNetwork(1, 1, k, hidden=(32, 32), seed=0)
        m.fit(x, t, steps=500, lr=1e-2)
        models[k] = m
    return models


def test_mdn_beats_the_single_gaussian_regressor(trained):
    x, t = inverse_sine(600, seed=0, device="cpu")
    xv, tv = inverse_sine(1000, seed=1, device="cpu")
    nll3 = trained[3].nll(tv, xv)
    # the best single-Gaussian regressor among: the K = 1 network (heteroscedastic) and
    # homoscedastic polynomial fits of degree 1 to 7
    baseline = min(
        [trained[1].nll(tv, xv)] + [polynomial_gaussian_nll(x, t, xv, tv, d) for d in range(1, 8)]
    )
    # the held-out margin is about 0.7-1 nats per point; require 0.5
    assert nll3 < baseline - 0.5, (nll3, baseline)


def test_samples_cover_all_three_branches(trained):
    """At x = 0.5, t + 0.3 sin(2 pi t) = 0.5 has three roots; samples reach each one."""
    from scipy.optimize import brentq

    f = lambda t: t + 0.3 * math.sin(2 * math.pi * t) - 0.5  # noqa: E731
    roots = [brentq(f, a, b) for a, b in ((0.0, 0.3), (0.3, 0.7), (0.7, 1.0))]
    draws = trained[3].sample(torch.full((1, 1), 0.5), n_samples=4000, seed=0).ravel().numpy()
    for root in roots:
        frac = np.mean(np.abs(draws - root) < 0.06)
        assert frac > 0.1, (root, frac)
    # the single Gaussian puts most of its mass between the branches
    one = trained[1].sample(torch.full((1, 1), 0.5), n_samples=4000, seed=0).ravel().numpy()
    assert np.mean(np.abs(one - roots[1]) < 0.06) < np.mean(np.abs(draws - roots[1]) < 0.06) + 0.2


def test_log_prob_mean_mode_sample_are_consistent(trained):
    m = trained[3]
    x = torch.linspace(0.1, 0.9, 7).unsqueeze(-1)
    pi, mu, sigma = m.mixture_parameters(x)
    t = torch.full((7, 1), 0.4)
    ref = np.log((pi.numpy() * norm.pdf(0.4, mu[..., 0].numpy(), sigma[..., 0].numpy())).sum(-1))
    np.testing.assert_allclose(m.log_prob(t, x).numpy(), ref, rtol=1e-5, atol=1e-5)
    assert torch.allclose(m.mean(x), (pi * mu[..., 0]).sum(-1, keepdim=True))
    # mode: no grid point has a higher density than the returned mode
    mode = m.mode(x)
    grid = torch.linspace(-0.5, 1.5, 4001)
    dens = m.log_prob(grid.repeat(7).unsqueeze(-1), x.repeat_interleave(4001, 0)).view(7, 4001)
    assert torch.all(m.log_prob(mode, x) >= dens.max(-1).values - 1e-4)
    # sample moments against the mixture's mean
    draws = m.sample(x, n_samples=20_000, seed=1)
    assert draws.shape == (20_000, 7, 1)
    se = draws.std(0) / math.sqrt(20_000)
    assert torch.all((draws.mean(0) - m.mean(x)).abs() < 4 * se)


def test_model_guide_pair_with_predictive(trained):
    from pyro.infer import Predictive

    m = trained[3]
    x = torch.full((5, 1), 0.5)
    out = Predictive(m.model, guide=m.guide, num_samples=3)(x)
    assert out["t"].shape == (3, 5, 1)


def test_save_load(tmp_path, trained):
    m = trained[3]
    m.save(tmp_path / "mdn.pt")
    back = MixtureDensityNetwork.load(tmp_path / "mdn.pt")
    x, t = inverse_sine(20, seed=3, device="cpu")
    assert torch.equal(back.log_prob(t, x), m.log_prob(t, x))


def test_bad_input():
    m = MixtureDensityNetwork(2, 1, 3, hidden=8)
    with pytest.raises(ShapeError, match=r"\(N, 2\)"):
        m.log_prob(torch.zeros(4, 1), torch.zeros(4, 3))
    with pytest.raises(ShapeError, match="rows"):
        m.log_prob(torch.zeros(3, 1), torch.zeros(4, 2))
    with pytest.raises(NonFiniteError):
        m.fit(torch.tensor([[0.0, math.nan]]), torch.zeros(1, 1), steps=1)
    with pytest.raises(ConfigurationError, match="n_components"):
        MixtureDensityNetwork(1, 1, 0)
    with pytest.raises(ConfigurationError, match="activation"):
        MixtureDensityNetwork(1, 1, 2, activation="sigmoidal")
    with pytest.raises(ConfigurationError, match="min_scale"):
        MixtureDensityNetwork(1, 1, 2, min_scale=0.0)
