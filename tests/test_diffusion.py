"""DiffusionModel (notes 2.2.2.4, eq. 16-17): closed forms, the bound, the samplers."""

from __future__ import annotations

import math

import numpy as np
import pyro
import pyro.poutine as poutine
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO
from scipy import stats

import pyrobn
from pyrobn.models.diffusion import DiffusionModel, Schedule
from pyrobn.models.diffusion.network import time_features
from pyrobn.models.diffusion.reference import ReferenceDiffusion, train_reference
from tests.common import assert_close


@pytest.fixture(scope="module")
def digits():
    """The book's split's first rows: 17-level images and labels (CPU)."""
    from sklearn.datasets import load_digits

    data = load_digits()
    return torch.tensor(data.data[:300]).long(), torch.tensor(data.target[:300]).long()


def _small(**kwargs) -> DiffusionModel:
    torch.manual_seed(0)
    config = {"levels": 17, "timesteps": 12, "hidden": (32, 32), **kwargs}
    return DiffusionModel(64, **config)


# ---------------------------------------------------------------------- the schedule


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(1e-4, 0.9), min_size=1, max_size=8))
def test_closed_forms_are_the_composed_chain(raw):
    """q(z_t | x) = N(α_t x, σ_t²) is the forward chain composed step by step, and
    q(z_{t-1} | z_t, x) is Gaussian conditioning of the joint (z_{t-1}, z_t) given x."""
    betas = sorted(raw)
    s = Schedule(betas, len(betas))
    scale, var = 1.0, 0.0
    for t, beta in enumerate(betas, start=1):
        scale, var = math.sqrt(1 - beta) * scale, (1 - beta) * var + beta
        assert s.alpha[t].item() == pytest.approx(scale, rel=1e-12)
        assert s.sigma[t].item() ** 2 == pytest.approx(var, rel=1e-10, abs=1e-15)
        if t >= 2:
            # joint of (z_{t-1}, z_t) given x: cov [[v, r v], [r v, v_t]], r = √(1 - β_t)
            v_prev = s.sigma[t - 1].item() ** 2
            r = math.sqrt(1 - beta)
            gain = r * v_prev / var
            # E[z_{t-1} | z_t, x] = α_{t-1} x + gain (z_t - α_t x)
            assert s.post_z[t].item() == pytest.approx(gain, rel=1e-10)
            assert s.post_x[t].item() == pytest.approx(
                s.alpha[t - 1].item() - gain * s.alpha[t].item(), rel=1e-8, abs=1e-14
            )
            assert s.post_var[t].item() == pytest.approx(v_prev - gain * r * v_prev, rel=1e-8)


def test_named_schedules():
    linear = Schedule("linear", 1000)
    assert linear.beta[1].item() == pytest.approx(1e-4)
    assert linear.beta[1000].item() == pytest.approx(0.02)
    cosine = Schedule("cosine", 50)
    t = np.arange(51) / 50
    f = np.cos((t + 0.008) / 1.008 * np.pi / 2) ** 2
    want = np.clip(1 - (f / f[0])[1:] / (f / f[0])[:-1], None, 0.999)
    assert_close(cosine.beta[1:], want, rtol=1e-12)
    log_snr = Schedule("log_snr", 200)
    assert_close(log_snr.snr[1:].log(), torch.linspace(10, -10, 200, dtype=torch.float64),
                 rtol=1e-9, atol=1e-9)  # fmt: skip
    for s in (linear, cosine):
        assert bool((s.beta[2:] >= s.beta[1:-1]).all())
    for s in (linear, cosine, log_snr):
        snr = s.snr[1:]
        assert bool((snr[1:] < snr[:-1]).all())  # the noise only grows
    DiffusionModel(4, timesteps=200, schedule="log_snr", hidden=(4,))  # a named exception


# ---------------------------------------------------------------------- the ELBO


CASES = [
    {"prediction": "data"},
    {"prediction": "noise"},
    {"prediction": "data", "n_classes": 10},
    {"prediction": "noise", "levels": None},
    {"prediction": "data", "levels": None, "schedule": "linear"},
]


@pytest.mark.parametrize("config", CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
@pytest.mark.parametrize(
    ("batch_size", "time_samples"), [(None, None), (40, None), (None, 3), (40, 3), (40, 50)]
)
def test_pyro_elbo_is_the_reference_bound_on_the_same_noise(
    config, batch_size, time_samples, digits, device
):
    """Same weights, same seed: Pyro's TraceMeanField_ELBO of the model/guide pair (Gaussian
    KLs) equals the plain-PyTorch bound written in its SNR form, for the whole chain and
    for subsampled rows and steps, with label dropout on (on every available device)."""
    x, y = digits[0][:120].to(device), digits[1][:120].to(device)
    dm = _small(**config).to(device)
    if dm.levels is None:
        x = x.double().float() / 4 + torch.randn(
            x.shape, generator=torch.Generator().manual_seed(1)
        )
        dm.fit(x[:10], steps=1, progress=False, seed=0)  # sets the standardisation
    y = y if dm.n_classes else None
    dm.train()
    ref = ReferenceDiffusion.like(dm)
    pyro.set_rng_seed(5)
    got = TraceMeanField_ELBO().loss(dm.model, dm.guide, x, y, batch_size, time_samples)
    torch.manual_seed(5)
    want = float(ref.loss(x, y, batch_size, time_samples, drop=True))
    assert got == pytest.approx(want, rel=2e-5)


def test_subsampled_elbo_is_unbiased_for_the_full_bound(digits):
    """The time plate's estimate ((T-1)/K Σ over K rotated steps) averages to the full
    bound: mean over draws within 4 standard errors of ``nll`` over all steps."""
    x = digits[0][:16]
    dm = _small(timesteps=9)
    full = dm.nll(x.repeat(200, 1), seed=0).mean().item()
    loss = TraceMeanField_ELBO()
    draws = []
    with pyrobn.random.seeded(1):
        for _ in range(150):
            draws.append(loss.loss(dm.model, dm.guide, x, None, None, 2) / len(x))
    draws = np.array(draws)
    se = draws.std(ddof=1) / math.sqrt(len(draws))
    assert abs(draws.mean() - full) < 4 * se + 0.1, (draws.mean(), full, se)


def test_training_follows_the_reference_step_by_step(digits):
    """fit (fit_svi, FusedAdam) and the plain-PyTorch loop give the same losses per step."""
    x, y = digits
    dm = _small(n_classes=10)
    ref = ReferenceDiffusion.like(dm)
    dm.fit(x, y, steps=25, batch_size=64, time_samples=3, lr=3e-3, seed=4, progress=False)
    losses = train_reference(ref, x, y, steps=25, batch_size=64, time_samples=3, lr=3e-3, seed=4)
    got = [-v for v in dm.fit_result_.objective]
    np.testing.assert_allclose(got, losses, rtol=1e-4)
    assert np.mean(got[-5:]) < np.mean(got[:5])


# ---------------------------------------------------------------------- the Gaussian case


def _linear_model(seed: int, prediction: str) -> DiffusionModel:
    """D = 2, real data, a network without hidden layers: x̂(z, t) is affine in z, so the
    reverse chain is linear-Gaussian and both the bound and log p(x) have closed forms."""
    torch.manual_seed(seed)
    dm = DiffusionModel(
        2, timesteps=5, schedule=[0.05, 0.1, 0.2, 0.4, 0.6], prediction=prediction, hidden=()
    ).double()
    with torch.no_grad():
        for p in dm.net.parameters():
            p.mul_(0.5)
        dm.shift.copy_(torch.tensor([0.3, -1.0]))
        dm.scale.copy_(torch.tensor([2.0, 0.5]))
        dm.standardized.fill_(True)
    return dm


def _affine(dm: DiffusionModel, t: int) -> tuple[torch.Tensor, torch.Tensor]:
    """x̂(z, t) = A z + c from the network's single linear layer."""
    D = dm.data_dim
    W, b = dm.net.out.weight.detach(), dm.net.out.bias.detach()
    e = time_features(torch.tensor([t]), dm.timesteps, dm.net.time_dim).double()[0]
    A, c = W[:, :D], W[:, D:] @ e + b
    if dm.prediction == "noise":
        alpha, sigma = dm._alpha[t].item(), dm._sigma[t].item()
        A, c = (torch.eye(D, dtype=A.dtype) - sigma * A) / alpha, -sigma * c / alpha
    return A, c


def _closed_forms(dm: DiffusionModel, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(the bound on -log p(x), the exact -log p(x)) per row, in float64."""
    D, T = dm.data_dim, dm.timesteps
    eye = torch.eye(D, dtype=torch.float64)
    xt = (x - dm.shift) / dm.scale
    alpha, sigma = dm._alpha, dm._sigma
    snr = alpha**2 / sigma**2
    log_scale = dm.scale.log().sum()
    bound = 0.5 * (alpha[T] ** 2 * xt**2 + sigma[T] ** 2 - 1 - torch.log(sigma[T] ** 2)).sum(-1)
    for t in range(2, T + 1):
        A, c = _affine(dm, t)
        err = (xt @ (eye - alpha[t] * A).T - c).pow(2).sum(-1) + sigma[t] ** 2 * A.pow(2).sum()
        bound = bound + 0.5 * (snr[t - 1] - snr[t]) * err
    A1, c1 = _affine(dm, 1)
    s2 = (sigma[1] / alpha[1]) ** 2
    err = (xt @ (eye - alpha[1] * A1).T - c1).pow(2).sum(-1) + sigma[1] ** 2 * A1.pow(2).sum()
    bound = bound + 0.5 * D * torch.log(2 * math.pi * s2) + err / (2 * s2) + log_scale
    # exact: propagate the reverse chain's Gaussian from z_T ~ N(0, I) to x
    m, S = torch.zeros(D, dtype=torch.float64), eye.clone()
    for t in range(T, 1, -1):
        A, c = _affine(dm, t)
        M = dm._post_x[t] * A + dm._post_z[t] * eye
        m, S = M @ m + dm._post_x[t] * c, M @ S @ M.T + dm._post_std[t] ** 2 * eye
    law = torch.distributions.MultivariateNormal(A1 @ m + c1, A1 @ S @ A1.T + s2 * eye)
    return bound, -law.log_prob(xt) + log_scale


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from(["data", "noise"]))
def test_gaussian_bound_is_above_the_exact_nll(seed, prediction):
    """Linear-Gaussian reverse chain: the closed-form bound is >= the exact -log p(x) for
    every x, with equality impossible for a generic network (the gap is a KL)."""
    dm = _linear_model(seed, prediction)
    x = torch.randn(50, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    bound, exact = _closed_forms(dm, x * 2)
    assert bool((bound >= exact - 1e-9).all()), (bound - exact).min()


@pytest.mark.parametrize("prediction", ["data", "noise"])
def test_gaussian_bound_equals_its_closed_form(prediction):
    """``nll`` (one draw per step) averages to the closed-form bound (4 standard errors),
    and the Pyro ELBO's average over draws agrees too."""
    dm = _linear_model(3, prediction)
    x = torch.tensor([[1.0, -0.5], [0.2, 2.0]], dtype=torch.float64)
    bound, exact = _closed_forms(dm, x)
    draws = dm.nll(x.repeat_interleave(5000, 0), seed=0).reshape(2, 5000)
    se = draws.std(1) / math.sqrt(5000)
    assert bool(((draws.mean(1) - bound).abs() < 4 * se).all()), (draws.mean(1), bound, se)
    assert bool((bound > exact).all())
    loss = TraceMeanField_ELBO()
    with pyrobn.random.seeded(2):
        pyro_draws = np.array([loss.loss(dm.model, dm.guide, x[:1]) for _ in range(300)])
    se = pyro_draws.std(ddof=1) / math.sqrt(len(pyro_draws))
    assert abs(pyro_draws.mean() - bound[0].item()) < 4 * se, (pyro_draws.mean(), bound[0], se)


# ---------------------------------------------------------------------- T = 1 is a VAE


def test_one_step_is_a_vae_with_a_fixed_encoder(digits):
    """T = 1: the guide is q(z | x) = N(√(1-β) x̃, β I) with no parameter, the model
    p(z) = N(0, I) and the decoder p(x | z_1); its ELBO is a VAE's with that encoder."""
    x = digits[0][:50]
    beta = 0.05
    dm = DiffusionModel(64, levels=17, timesteps=1, schedule=[beta], hidden=(32,))
    guide = poutine.trace(dm.guide).get_trace(x)
    model = poutine.trace(poutine.replay(dm.model, trace=guide)).get_trace(x)
    assert [n for n, s in guide.nodes.items() if s["type"] == "param"] == []
    assert [n for n, s in guide.nodes.items() if s["type"] == "sample" and n != "data"] == ["z_T"]
    latent = [n for n, s in model.nodes.items() if s["type"] == "sample" and not s["is_observed"]]
    assert latent == ["data", "z_T"]
    x_tilde = 2 * x.double() / 16 - 1
    q = guide.nodes["z_T"]["fn"].base_dist
    assert_close(q.loc, math.sqrt(1 - beta) * x_tilde, rtol=1e-6, atol=1e-6)
    assert_close(q.scale, torch.full_like(q.scale, math.sqrt(beta)), rtol=1e-6)

    def vae_model(x):
        with pyro.plate("data", len(x)):
            z = pyro.sample(
                "z", pyro.distributions.Normal(torch.zeros(len(x), 64), 1.0).to_event(1)
            )
            pyro.sample("obs", dm._decoder(z, None), obs=x)

    def vae_guide(x):
        with pyro.plate("data", len(x)):
            loc = math.sqrt(1 - beta) * (2 * x.float() / 16 - 1)
            pyro.sample("z", pyro.distributions.Normal(loc, math.sqrt(beta)).to_event(1))

    for loss in (Trace_ELBO(), TraceMeanField_ELBO()):
        pyro.set_rng_seed(3)
        want = loss.loss(vae_model, vae_guide, x)
        pyro.set_rng_seed(3)
        assert loss.loss(dm.model, dm.guide, x) == pytest.approx(want, rel=1e-6)


# ---------------------------------------------------------------------- sampling


def test_ancestral_sampler_is_the_model_reverse_chain():
    """sample(steps=None) (the DDIM update at η = 1) draws each z_{t-1} from the model's
    p(z_{t-1} | z_t): the same draws through ``_reverse`` give the same chain."""
    dm = _small(timesteps=6)
    _, chain = dm.sample(3, seed=7, return_chain=True)
    g = pyrobn.random.generator(7)
    z = torch.randn(3, 64, generator=g)
    for t, got in chain[:-1]:
        assert_close(got, z, rtol=1e-5, atol=1e-5)
        mean, sd = dm._reverse(z, torch.full((3,), t), None)
        z = mean + sd * torch.randn(3, 64, generator=g)
    assert_close(chain[-1][1], z, rtol=1e-5, atol=1e-5)


def test_gaussian_samples_follow_the_exact_marginal():
    """Linear-Gaussian case: ancestral samples of x match N(mean, cov) of the reverse chain
    (a KS test on each coordinate at level 1e-3)."""
    dm = _linear_model(5, "data")
    x = dm.sample(4000, seed=0)
    D, T = 2, dm.timesteps
    eye = torch.eye(D, dtype=torch.float64)
    m, S = torch.zeros(D, dtype=torch.float64), eye.clone()
    for t in range(T, 1, -1):
        A, c = _affine(dm, t)
        M = dm._post_x[t] * A + dm._post_z[t] * eye
        m, S = M @ m + dm._post_x[t] * c, M @ S @ M.T + dm._post_std[t] ** 2 * eye
    A1, c1 = _affine(dm, 1)
    s2 = (dm._sigma[1] / dm._alpha[1]) ** 2
    mean = (A1 @ m + c1) * dm.scale + dm.shift
    sd = torch.sqrt(torch.diagonal(A1 @ S @ A1.T + s2 * eye)) * dm.scale
    for d in range(D):
        p = stats.kstest(x[:, d].numpy(), "norm", args=(mean[d].item(), sd[d].item())).pvalue
        assert p > 1e-3, (d, p)


def test_fast_sampler_and_levels(digits):
    dm = _small(timesteps=20)
    a = dm.sample(5, steps=4, seed=1)
    assert a.dtype == torch.long and a.shape == (5, 64)
    assert int(a.min()) >= 0 and int(a.max()) <= 16
    assert torch.equal(a, dm.sample(5, steps=4, seed=1))
    assert not torch.equal(a, dm.sample(5, steps=4, seed=2))
    _, chain = dm.sample(2, steps=4, eta=0.0, seed=1, return_chain=True)
    assert [t for t, _ in chain] == [20, 14, 7, 1]


def test_guidance_combines_conditional_and_unconditional_outputs():
    dm = _small(n_classes=3)
    z, t = torch.randn(4, 64), torch.full((4,), 5)
    c = dm._label(torch.tensor([0, 1, 2, 1]), torch.Size([4]), torch.float32)
    null = dm._label(None, torch.Size([4]), torch.float32)
    w = 2.5
    want = (1 + w) * dm.net(z, t, c) - w * dm.net(z, t, null)
    assert_close(dm._net_out(z, t, c, w), want, rtol=1e-5, atol=1e-5)
    assert_close(dm._net_out(z, t, c, 0.0), dm.net(z, t, c))


# ---------------------------------------------------------------------- fitting and files


def test_fit_lowers_the_bound_and_keeps_the_best_validation_state(digits):
    x = digits[0]
    dm = _small()
    before = dm.nll(x[200:], seed=0).mean().item()
    dm.fit(x[:200], epochs=6, batch_size=50, lr=3e-3, x_val=x[200:], eval_every=2,
           seed=0, progress=False)  # fmt: skip
    assert len(dm.validation_bound_) == 3
    after = dm.nll(x[200:], seed=0).mean().item()
    assert after == pytest.approx(min(dm.validation_bound_), rel=1e-5)
    assert after < before - 5
    assert dm.fit_result_.objective_name == "elbo"
    assert dm.fit_result_.n_iter == 6 * 4


def test_ema_leaves_the_average_of_the_trajectory(digits):
    x = digits[0][:64]
    dm = _small()
    trajectory = []
    dm.fit(x, steps=5, batch_size=32, ema=0.5, seed=0, progress=False,
           callback=lambda step, loss: trajectory.append(
               [p.detach().clone() for p in dm.parameters()]))  # fmt: skip
    first = _small()
    average = [p.detach().clone() for p in first.parameters()]
    for params in trajectory:
        average = [0.5 * a + 0.5 * p for a, p in zip(average, params)]
    for got, want in zip(dm.parameters(), average):
        assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_save_load_is_exact(tmp_path, digits):
    x, y = digits[0][:30], digits[1][:30]
    dm = _small(n_classes=10, levels=17)
    dm.fit(x, y, steps=3, progress=False, seed=0)
    dm.save(tmp_path / "dm.pt")
    back = DiffusionModel.load(tmp_path / "dm.pt")
    assert torch.equal(back.nll(x, y, seed=1), dm.nll(x, y, seed=1))
    assert torch.equal(
        back.sample(4, y=3, seed=2, guidance=1.0), dm.sample(4, y=3, seed=2, guidance=1.0)
    )


def test_no_side_effects_on_the_callers_rng(digits):
    x = digits[0][:20]
    dm = _small()
    before = torch.get_rng_state()
    dm.sample(2, seed=0)
    dm.nll(x, seed=0)
    dm.encode(x, [1, 5], seed=0)
    dm.fit(x, steps=2, seed=0, progress=False)
    assert torch.equal(torch.get_rng_state(), before)


def test_encode_and_denoise(digits):
    x = digits[0][:8]
    dm = _small(timesteps=1000)
    z = dm.encode(x, [1, 500, 1000], seed=0)
    assert z.shape == (3, 8, 64)
    x_tilde = 2 * x / 16 - 1
    assert_close(z[0], dm._alpha[1].item() * x_tilde, atol=5 * dm._sigma[1].item())
    # with little noise the level logits snap z_1 back to its level whatever the network
    assert_close(dm.denoise(z[0], 1), x.float(), atol=1e-3)


def test_graph_is_the_reverse_markov_chain():
    g = _small(n_classes=10).graph()
    assert g.parents("x") == ("z_1", "y", "theta")
    # eq. 17 is a Markov chain: given z_1 (and the label and weights every step reads)
    # x says nothing more about z_T
    assert g.d_separated("x", "z_T", given=["z_1", "y", "theta"])
    assert not g.d_separated("x", "z_T", given=["y", "theta"])
    assert not g.d_separated("x", "z_T", given=["z_1"])  # y -> z_1 <- z_t: a collider
    f = _small().forward_graph()
    assert f.parents("z_1") == ("x",) and f.d_separated("x", "z_T", given=["z_t"])


def test_a_deleted_model_releases_its_parameters(digits):
    import gc

    from pyrobn.infer.params import owned_params

    dm = _small()
    dm.fit(digits[0][:40], steps=2, seed=0, progress=False)
    name = dm._pyro_name
    assert len(owned_params(name)) == len(list(dm.parameters()))
    del dm
    gc.collect()
    assert owned_params(name) == []


def test_conditional_validation_is_scored_without_dropout_and_with_the_labels(digits):
    # regression: the validation bound was computed in train mode (dropout on), so the
    # kept state's bound differed from the recorded best
    x, y = digits
    dm = _small(dropout=0.2, n_classes=10)
    dm.fit(x[:100], y[:100], epochs=2, batch_size=50, x_val=x[200:240], y_val=y[200:240],
           eval_every=1, seed=0, progress=False)  # fmt: skip
    assert len(dm.validation_bound_) == 2 and not dm.training
    best = min(dm.validation_bound_)
    assert dm.nll(x[200:240], y[200:240], seed=0).mean().item() == pytest.approx(best, rel=1e-6)
    other = dm.nll(x[200:240], (y[200:240] + 1) % 10, seed=0).mean().item()
    assert abs(other - best) > 1e-4 * abs(best)  # the labels move the score
