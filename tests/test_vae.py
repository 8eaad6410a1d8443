"""VAE, ConditionalVAE, Autoencoder and the latent tools (lecture: VAE; notes 2.2.2.2-2.2.4).

Statistical checks hold by a margin: each bound below was measured over seeds 0-9 with
torch.set_num_threads(1) and (2) (the margins are stated next to them)."""

from __future__ import annotations

import math

import numpy as np
import pyro
import pytest
import torch
from vae_reference import ReferenceVAE, train_reference

import pyrobn
from pyrobn.errors import (
    ConfigurationError,
    NonFiniteError,
    OutOfSupportError,
    PyrobnValueError,
    ShapeError,
    TrainingDiverged,
)
from pyrobn.models.vae import lerp, slerp
from pyrobn.random import seeded

LIKELIHOODS = ["bernoulli", "continuous_bernoulli", "normal", "categorical"]


@pytest.fixture(scope="module")
def digits_cpu():
    return pyrobn.datasets.digits(binarize=True, device="cpu")


def _small_vae(device, likelihood="bernoulli", **kwargs) -> pyrobn.VAE:
    kwargs = {"latent_dim": 3, "hidden": (32,), "likelihood": likelihood, **kwargs}
    if likelihood == "categorical":
        kwargs.setdefault("levels", 17)
    with seeded(0):
        return pyrobn.VAE(64, **kwargs).to(device)


def _grey(digits_cpu, n, device, likelihood="bernoulli"):
    """Grey-level digits in [0, 1] (the unit-interval likelihoods accept them), or their
    17 integer levels for the categorical."""
    grey = pyrobn.datasets.digits(device="cpu").x_train[:n]
    if likelihood == "categorical":
        grey = (grey * 16).round()
    return grey.to(device)


# ---------------------------------------------------------------------- the ELBO itself


@pytest.mark.parametrize("likelihood", LIKELIHOODS)
@pytest.mark.parametrize("batch_size", [None, 50])
def test_model_guide_elbo_is_the_reference_elbo(device, likelihood, batch_size, digits_cpu):
    """Same parameters, same seed: Pyro's Trace_ELBO / TraceMeanField_ELBO losses equal the
    hand-written plain-PyTorch ELBO (Monte Carlo KL / the lecture's closed-form KL)."""
    x = _grey(digits_cpu, 200, device, likelihood)
    vae = _small_vae(device, likelihood)
    ref = ReferenceVAE.like(vae)
    scale = 1.0 if batch_size is None else 200 / batch_size

    def reference_loss(kl):
        xb = x if batch_size is None else x[torch.randperm(200, device=device)[:batch_size]]
        return float(-scale * ref.elbo(xb, kl).sum().detach())

    for pyro_loss, kl in [
        (pyro.infer.Trace_ELBO(), "mc"),
        (pyro.infer.TraceMeanField_ELBO(), "analytic"),
    ]:
        with seeded(7):
            got = pyro_loss.loss(vae.model, vae.guide, x, batch_size=batch_size)
        with seeded(7):
            want = reference_loss(kl)
        assert got == pytest.approx(want, rel=1e-5), (kl, got, want)
    if batch_size is None:
        with seeded(7):
            got = pyro.infer.Trace_ELBO().loss(vae.model, vae.guide, x)
        assert -float(vae.elbo(x, seed=7).sum()) == pytest.approx(got, rel=1e-5)


def test_training_follows_the_reference_step_by_step(digits_cpu):
    """Same network, data, seed and steps (eager Trace_ELBO): the loss histories agree."""
    x = digits_cpu.x_train
    vae = _small_vae("cpu", hidden=(64,), latent_dim=4)
    ref = ReferenceVAE.like(vae)
    fitted = vae.fit(x, steps=150, batch_size=128, lr=3e-3, jit=False, seed=5, progress=False)
    assert fitted is vae
    losses = vae.fit_result_.history.losses
    ref_losses = train_reference(ref, x, 150, batch_size=128, lr=3e-3, seed=5)
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-3)
    assert losses[-1] < 0.7 * losses[0]


def test_trained_elbo_matches_reference_within_noise(digits_cpu):
    """The default (compiled) fit reaches the reference's test ELBO within seed-to-seed noise."""
    x, x_test = digits_cpu.x_train, digits_cpu.x_test
    steps, config = 400, {"hidden": (64,), "latent_dim": 4}

    def test_elbo(model):
        if isinstance(model, ReferenceVAE):
            with torch.no_grad(), seeded(123):
                return float(torch.stack([model.elbo(x_test) for _ in range(20)]).mean())
        return float(model.elbo(x_test, num_samples=20, seed=123).mean())

    reference = []
    for seed in range(4):
        with seeded(seed):
            ref = ReferenceVAE(64, likelihood="bernoulli", **config)
        train_reference(ref, x, steps, batch_size=128, lr=3e-3, seed=seed)
        reference.append(test_elbo(ref))
    with seeded(0):
        vae = pyrobn.VAE(64, **config)
    vae.fit(x, steps=steps, batch_size=128, lr=3e-3, seed=0, progress=False)
    spread = float(np.std(reference, ddof=1))
    assert abs(test_elbo(vae) - np.mean(reference)) <= 4 * spread * math.sqrt(1 + 1 / 4) + 0.05


def _linear_gaussian_vae(device, shift=0.0):
    """A linear-Gaussian VAE (hidden=()) whose encoder is the exact posterior (plus ``shift``).

    p(z) = N(0, I), p(x | z) = N(W z + b, s² I) with orthogonal columns of W, so the
    posterior N(Σ Wᵀ (x - b) / s², Σ), Σ = (I + WᵀW / s²)⁻¹, is diagonal. Returns the VAE
    and the exact marginal p(x) = N(b, W Wᵀ + s² I).
    """
    d, latent, s = 5, 2, 0.5
    g = torch.Generator().manual_seed(1)
    q, _ = torch.linalg.qr(torch.randn(d, latent, generator=g, dtype=torch.float64))
    w = q * torch.tensor([1.5, 0.8], dtype=torch.float64)
    b = torch.randn(d, generator=g, dtype=torch.float64)
    vae = pyrobn.VAE(d, latent_dim=latent, hidden=(), likelihood="normal", obs_scale=s).double()
    sigma_post = torch.linalg.inv(torch.eye(latent, dtype=torch.float64) + w.T @ w / s**2)
    enc_w = sigma_post @ w.T / s**2
    with torch.no_grad():
        vae.decoder[0].weight.copy_(w)
        vae.decoder[0].bias.copy_(b)
        vae.encoder[0].weight.zero_()
        vae.encoder[0].weight[:latent].copy_(enc_w)
        vae.encoder[0].bias[:latent].copy_(-enc_w @ b + shift)
        vae.encoder[0].bias[latent:].copy_(torch.log(torch.diagonal(sigma_post)))
    marginal = torch.distributions.MultivariateNormal(b, w @ w.T + s**2 * torch.eye(d))
    return vae.to(device), marginal, torch.diagonal(sigma_post)


def test_elbo_equals_log_evidence_for_the_exact_posterior(device):
    """log p(x) = ELBO + KL(q || p(z | x)) (lecture): with q the exact posterior, ELBO = log p(x)
    for every draw, and so does the importance-weighted estimate."""
    vae, marginal, _ = _linear_gaussian_vae(device)
    x = marginal.sample((50,)).to(device)
    exact = marginal.log_prob(x.cpu())
    torch.testing.assert_close(vae.elbo(x, num_samples=3, seed=0).cpu(), exact)
    torch.testing.assert_close(vae.log_likelihood(x, num_samples=7, seed=0).cpu(), exact)


def test_elbo_gap_is_the_kl_and_importance_weighting_closes_it(device):
    """With q shifted off the posterior by δ: E[ELBO] = log p(x) - KL, KL = Σ δ² / (2 σ²);
    the importance-weighted estimate rises with K towards log p(x) (Burda et al.)."""
    delta = 0.25
    vae, marginal, var_post = _linear_gaussian_vae(device, shift=delta)
    x = marginal.sample((40,)).to(device)
    exact = marginal.log_prob(x.cpu())
    kl = float((delta**2 / (2 * var_post)).sum())
    n_draws = 4000
    elbo_draws = vae.elbo(x.repeat(n_draws, 1), seed=1).cpu().reshape(n_draws, 40)
    gap = exact - elbo_draws.mean(0)
    standard_error = elbo_draws.std(0) / math.sqrt(n_draws)
    assert bool((gap - kl).abs().le(4 * standard_error + 1e-9).all())
    means = [
        float((vae.log_likelihood(x, num_samples=k, seed=2).cpu() - exact).mean())
        for k in (1, 10, 1000)
    ]
    assert means[0] < means[1] < means[2] <= 0.005
    assert abs(means[2]) < 0.01


def test_log_likelihood_with_one_sample_is_the_elbo(device, digits_cpu):
    vae = _small_vae(device)
    x = digits_cpu.x_test[:30].to(device)
    torch.testing.assert_close(vae.log_likelihood(x, num_samples=1, seed=4), vae.elbo(x, seed=4))


def test_samples_follow_the_marginal(device):
    """Ancestral samples of the linear-Gaussian VAE have covariance W Wᵀ + s² I (4 s.e.)."""
    vae, marginal, _ = _linear_gaussian_vae(device)
    n = 20000
    x = vae.sample(n, seed=0).cpu()
    assert x.shape == (n, 5)
    cov = marginal.covariance_matrix
    centred = x - marginal.loc
    products = centred[:, :, None] * centred[:, None, :]
    standard_error = products.std(0) / math.sqrt(n)
    assert bool(((products.mean(0) - cov).abs() <= 4 * standard_error).all())
    torch.testing.assert_close(vae.sample(5, seed=3), vae.sample(5, seed=3))
    means = vae.sample(5, seed=3, mean=True)
    with seeded(3):
        z = torch.randn(5, 2, dtype=torch.float64, device=device)
    torch.testing.assert_close(means, vae.decode(z))


# ---------------------------------------------------------------------- what training gives


def test_conditional_vae_generates_the_chosen_class(digits_cpu):
    """Samples of class c are classified as c by a logistic regression on the real digits."""
    from sklearn.linear_model import LogisticRegression

    x, y = digits_cpu.x_train, digits_cpu.y_train
    classifier = LogisticRegression(max_iter=2000).fit(x.numpy(), y.numpy())
    with seeded(0):
        cvae = pyrobn.ConditionalVAE(64, n_classes=10, latent_dim=4, hidden=(128,))
    cvae.fit(x, y, steps=1500, batch_size=128, lr=3e-3, seed=0, progress=False)
    labels = torch.arange(10).repeat_interleave(30)
    samples = cvae.sample(300, y=labels, seed=0, mean=True)
    accuracy = float((classifier.predict(samples.numpy()) == labels.numpy()).mean())
    assert accuracy >= 0.9, accuracy


# ---------------------------------------------------------------------- latent tools


def test_swiss_roll_latent_holds_both_manifold_coordinates():
    """The manifold hypothesis, in the form a 2-D VAE reaches (notes 2.2.4, Figura 13): the
    held-out latent means determine the roll parameter t and the height (10-NN regression
    R^2), even from a random start, where the chart stays curved (see the next test)."""
    from sklearn.neighbors import KNeighborsRegressor

    x, t = pyrobn.datasets.swiss_roll(3000, noise=0.1, seed=0, device="cpu")
    x_test, t_test = pyrobn.datasets.swiss_roll(1000, noise=0.1, seed=1, device="cpu")
    mean, std = x.mean(0), x.std(0)
    vae = pyrobn.VAE(3, latent_dim=2, hidden=(128, 128), likelihood="normal", obs_scale=0.05)
    vae.fit((x - mean) / std, steps=3000, batch_size=256, lr=3e-3, seed=0, progress=False)
    z, z_test = vae.encode((x - mean) / std), vae.encode((x_test - mean) / std)
    r2_t = KNeighborsRegressor(10).fit(z, t).score(z_test, t_test)
    r2_h = KNeighborsRegressor(10).fit(z, x[:, 1]).score(z_test, x_test[:, 1])
    assert r2_t >= 0.8, r2_t
    assert r2_h >= 0.95, r2_h
    # a collapsed or random code would not: the same regression on the prior noise fails
    noise = torch.randn(1000, 2, generator=torch.Generator().manual_seed(0))
    assert KNeighborsRegressor(10).fit(noise, t[:1000]).score(z_test, t_test) < 0.1


def test_init_from_embedding_fits_the_chart_and_its_inverse():
    """Encoder mean -> the standardised chart, encoder scale -> posterior_scale, decoder
    mean at the chart -> x: on a linear 2-D manifold in R^5 with its true coordinates."""
    g = torch.Generator().manual_seed(0)
    u = torch.randn(1000, 2, generator=g)
    x = u @ torch.randn(2, 5, generator=g) + 0.01 * torch.randn(1000, 5, generator=g)
    coords = u * torch.tensor([3.0, -0.5]) + 7.0  # any affine copy of the chart
    with seeded(0):
        vae = pyrobn.VAE(5, latent_dim=2, hidden=(64,), likelihood="normal", obs_scale=0.05)
    started = vae.init_from_embedding(x, coords, steps=400, lr=1e-2, seed=0, progress=False)
    assert started is vae and vae.fit_result_.n_iter == 400
    assert vae.fit_result_.objective_name == "chart_fit"
    chart = (coords - coords.mean(0)) / coords.std(0)
    loc, scale = vae.encode(x, return_scale=True)
    assert (loc - chart).abs().mean() < 0.03
    assert scale.log().sub(math.log(0.05)).abs().mean() < math.log(1.2)
    assert (vae.decode(chart) - x).pow(2).mean() < 0.002 * x.var(0).mean()


def test_swiss_roll_vae_from_an_isomap_start_orders_points_by_the_roll_parameter():
    """Issue 6: a 2-D latent VAE orders held-out swiss-roll points by t (Spearman >= 0.9
    along a latent direction chosen on the training points). Started from an Isomap chart
    (``init_from_embedding``) and then trained on the ELBO, it keeps the unrolled chart;
    the ELBO itself prefers that chart to what a random start reaches in the same
    number of steps, by more than one nat per point."""
    from sklearn.manifold import Isomap

    x, t = pyrobn.datasets.swiss_roll(2000, noise=0.1, seed=0, device="cpu")
    x_test, t_test = pyrobn.datasets.swiss_roll(1000, noise=0.1, seed=1, device="cpu")
    mean, std = x.mean(0), x.std(0)
    x, x_test = (x - mean) / std, (x_test - mean) / std
    chart = Isomap(n_neighbors=10, n_components=2).fit_transform(x.numpy())
    results = {}
    for start in ("isomap", "random"):
        with seeded(0):  # the same initial networks for both starts
            vae = pyrobn.VAE(
                3, latent_dim=2, hidden=(128, 128), likelihood="normal", obs_scale=0.05
            )
        steps = 2000
        if start == "isomap":
            vae.init_from_embedding(x, chart, steps=500, seed=0, progress=False)
            elbo_at_start = vae.elbo(x_test, num_samples=10, seed=0).mean().item()
            steps -= 500
        vae.fit(x, steps=steps, batch_size=256, lr=1e-3, seed=0, progress=False)
        z, z_test = vae.encode(x).numpy(), vae.encode(x_test).numpy()
        rho = pyrobn.datasets.best_direction_spearman(z, t, z_test, t_test)
        results[start] = rho, vae.elbo(x_test, num_samples=10, seed=0).mean().item()
    rho, elbo = results["isomap"]
    assert rho >= 0.9, results
    assert elbo > elbo_at_start, (elbo, elbo_at_start)  # the ELBO phase trained it further
    assert elbo > results["random"][1] + 1.0, results  # and the objective prefers this chart


def test_lerp_and_slerp():
    g = torch.Generator().manual_seed(0)
    z0, z1 = (
        torch.randn(4, 3, generator=g, dtype=torch.float64),
        torch.randn(4, 3, generator=g, dtype=torch.float64),
    )
    z1 = z1 / z1.norm(dim=-1, keepdim=True) * z0.norm(dim=-1, keepdim=True)  # equal norms
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    for path in (lerp(z0, z1, t), slerp(z0, z1, t)):
        assert path.shape == (11, 4, 3)
        torch.testing.assert_close(path[0], z0)
        torch.testing.assert_close(path[-1], z1)
    torch.testing.assert_close(lerp(z0, z1, t)[5], (z0 + z1) / 2)
    path = slerp(z0, z1, t)
    torch.testing.assert_close(path.norm(dim=-1), z0.norm(dim=-1).expand(11, 4))
    cos = (path * z0).sum(-1) / (path.norm(dim=-1) * z0.norm(dim=-1))
    omega = torch.acos((z0 * z1).sum(-1) / (z0.norm(dim=-1) * z1.norm(dim=-1)))
    torch.testing.assert_close(torch.acos(cos.clamp(-1, 1)), t[:, None] * omega, atol=1e-6, rtol=0)
    torch.testing.assert_close(slerp(z0, z0, t), z0.expand(11, 4, 3))  # Ω = 0: no division


@pytest.mark.parametrize("method", ["linear", "slerp"])
def test_interpolate_decodes_the_latent_path(device, digits_cpu, method):
    vae = _small_vae(device)
    x = digits_cpu.x_test[:6].to(device)
    rows = vae.interpolate(x[:3], x[3:], steps=7, method=method)
    assert rows.shape == (3, 7, 64)
    torch.testing.assert_close(rows[:, 0], vae.reconstruct(x[:3]))
    torch.testing.assert_close(rows[:, -1], vae.reconstruct(x[3:]))
    one = vae.interpolate(x[0], x[3], steps=7, method=method)
    assert one.shape == (7, 64)
    torch.testing.assert_close(one, rows[0])
    z0, z1 = vae.encode(x[0]), vae.encode(x[3])
    interpolate = lerp if method == "linear" else slerp
    middle = interpolate(z0, z1, torch.tensor([0.5], device=device))[0]
    torch.testing.assert_close(one[3], vae.decode(middle))


def test_attribute_vector_and_shift(device, digits_cpu):
    """eq. 21: z_attr = mean encoder(X+) - mean encoder(X-); x_λ = decoder(encoder(x) + λ z)."""
    vae = _small_vae(device)
    x, y = digits_cpu.x_train.to(device), digits_cpu.y_train.to(device)
    vector = vae.attribute_vector(x[y == 1], x[y == 0])
    torch.testing.assert_close(
        vector, vae.encode(x[y == 1]).mean(0) - vae.encode(x[y == 0]).mean(0)
    )
    base = x[:4]
    shifted = vae.shift(base, vector, [-1.0, 0.0, 2.0])
    assert shifted.shape == (3, 4, 64)
    torch.testing.assert_close(shifted[1], vae.reconstruct(base))
    torch.testing.assert_close(shifted[2], vae.decode(vae.encode(base) + 2.0 * vector))
    torch.testing.assert_close(vae.shift(base, vector, -1.0), shifted[0])


# ---------------------------------------------------------------------- Autoencoder


def test_autoencoder_loss_is_the_mse_and_training_lowers_it(device, digits_cpu):
    x = digits_cpu.x_train[:300].to(device)
    with seeded(0):
        ae = pyrobn.Autoencoder(64, latent_dim=2, hidden=(32,), sigmoid_output=True).to(device)
    loss = pyro.infer.Trace_ELBO().loss(ae.model, ae.guide, x)
    assert loss == pytest.approx(ae.mse(x) * x.numel(), rel=1e-5)  # N · D · MSE
    before = ae.mse(x)
    assert ae.fit(x, steps=200, batch_size=64, lr=1e-2, seed=0, progress=False) is ae
    assert ae.mse(x) < 0.8 * before
    assert ae.fit_result_.n_iter == 200 and ae.fit_result_.method == "svi"
    z = ae.encode(x)
    assert z.shape == (300, 2)
    torch.testing.assert_close(ae.reconstruct(x), ae.decode(z))
    assert ae.interpolate(x[0], x[1], steps=4).shape == (4, 64)


# ---------------------------------------------------------------------- bad input


@pytest.mark.parametrize("likelihood", ["bernoulli", "continuous_bernoulli"])
def test_data_outside_unit_interval_is_refused(likelihood):
    vae = _small_vae("cpu", likelihood)
    x = torch.rand(10, 64)
    x[3, 7] = 1.5
    with pytest.raises(OutOfSupportError, match=r"x\[3, 7\] = 1.5 .*outside \[0, 1\]"):
        vae.fit(x, steps=1, progress=False)
    with pytest.raises(OutOfSupportError, match="outside"):
        vae.elbo(-x)


def test_bad_data_is_refused():
    vae = _small_vae("cpu", "normal")
    x = torch.randn(10, 64)
    vae.elbo(x * 5)  # the normal likelihood takes any real value
    bad = x.clone()
    bad[2, 5] = math.nan
    with pytest.raises(NonFiniteError, match=r"index \(2, 5\)"):
        vae.fit(bad, steps=1, progress=False)
    with pytest.raises(ShapeError, match=r"64.*\(10, 63\)"):
        vae.fit(x[:, :63], steps=1, progress=False)
    with pytest.raises(ShapeError, match="63"):
        vae.encode(x[:, :63])
    with pytest.raises(ShapeError, match="latent_dim = 3"):
        vae.decode(torch.zeros(4, 2))
    with pytest.raises(ConfigurationError, match="interpolation"):
        vae.interpolate(x[0], x[1], method="cubic")
    chart = torch.randn(10, 3)
    with pytest.raises(ShapeError, match=r"embedding .*\(10, 3\).*\(9, 3\)"):
        vae.init_from_embedding(x, chart[:9], steps=1, progress=False)
    with pytest.raises(ShapeError, match=r"embedding .*\(10, 3\).*\(10, 2\)"):
        vae.init_from_embedding(x, chart[:, :2], steps=1, progress=False)
    chart[4, 1] = math.inf
    with pytest.raises(NonFiniteError, match=r"embedding .*index \(4, 1\)"):
        vae.init_from_embedding(x, chart, steps=1, progress=False)
    chart[:, 1] = 2.0
    with pytest.raises(PyrobnValueError, match="embedding column 1 is constant"):
        vae.init_from_embedding(x, chart, steps=1, progress=False)
    with pytest.raises(NonFiniteError, match=r"index \(2, 5\)"):
        vae.init_from_embedding(bad, torch.randn(10, 3), steps=1, progress=False)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"likelihood": "poisson"},
        {"latent_dim": 0},
        {"hidden": (32, 0)},
        {"activation": "sigmoidal"},
        {"likelihood": "bernoulli", "obs_scale": 0.1},
        {"likelihood": "normal", "obs_scale": -1.0},
    ],
)
def test_bad_configuration_is_refused(kwargs):
    with pytest.raises(ConfigurationError):
        pyrobn.VAE(64, **{"latent_dim": 2, **kwargs})


def test_bad_labels_are_refused():
    cvae = pyrobn.ConditionalVAE(64, n_classes=3, latent_dim=2, hidden=(8,))
    x = torch.rand(5, 64)
    with pytest.raises(OutOfSupportError, match="index"):
        cvae.fit(x, torch.tensor([0, 1, 2, 3, 0]), steps=1, progress=False)
    with pytest.raises(ShapeError, match="y"):
        cvae.elbo(x, torch.tensor([0, 1]))
    with pytest.raises(OutOfSupportError, match="integers"):
        cvae.sample(2, y=torch.tensor([0.5, 1.0]))
    with pytest.raises(ConfigurationError, match="n_classes"):
        pyrobn.ConditionalVAE(64, n_classes=1)


def test_diverging_training_stops_and_keeps_the_last_good_parameters(digits_cpu):
    """An absurd learning rate: TrainingDiverged, with finite parameters from the run."""
    vae = _small_vae("cpu")
    seen = [{k: v.clone() for k, v in vae.state_dict().items()}]

    def remember(step, loss):
        seen.append({k: v.clone() for k, v in vae.state_dict().items()})

    with pytest.raises(TrainingDiverged) as caught:
        vae.fit(digits_cpu.x_train, steps=200, lr=1e6, seed=0, progress=False, callback=remember)
    state = vae.state_dict()
    assert all(bool(torch.isfinite(v).all()) for v in state.values())
    matches = [i for i, s in enumerate(seen) if all(torch.equal(s[k], state[k]) for k in state)]
    assert matches, "the parameters are none of the run's finite states"
    assert matches[-1] >= caught.value.step - 2
    assert bool(torch.isfinite(vae.elbo(digits_cpu.x_test)).all())


# ---------------------------------------------------------------------- persistence


def test_save_load_round_trip(tmp_path, device, digits_cpu):
    x, y = digits_cpu.x_test[:20].to(device), digits_cpu.y_test[:20].to(device)
    vae = _small_vae(device, "normal")
    vae.fit(x, steps=20, batch_size=10, seed=0, progress=False)
    vae.save(tmp_path / "vae.pt")
    loaded = pyrobn.VAE.load(tmp_path / "vae.pt", map_location=device)
    assert loaded.config == vae.config and loaded._pyro_name != vae._pyro_name
    torch.testing.assert_close(loaded.encode(x), vae.encode(x), rtol=0, atol=0)
    torch.testing.assert_close(loaded.elbo(x, seed=1), vae.elbo(x, seed=1), rtol=0, atol=0)
    torch.testing.assert_close(loaded.sample(4, seed=2), vae.sample(4, seed=2), rtol=0, atol=0)

    with seeded(0):
        cvae = pyrobn.ConditionalVAE(64, n_classes=10, latent_dim=2, hidden=(16,)).to(device)
    cvae.fit(x, y, steps=10, batch_size=10, seed=0, progress=False)
    cvae.save(tmp_path / "cvae.pt")
    loaded_c = pyrobn.ConditionalVAE.load(tmp_path / "cvae.pt", map_location=device)
    torch.testing.assert_close(loaded_c.sample(4, y=3, seed=2), cvae.sample(4, y=3, seed=2))
    torch.testing.assert_close(
        loaded_c.log_likelihood(x, y, num_samples=5, seed=0),
        cvae.log_likelihood(x, y, num_samples=5, seed=0),
    )

    ae = pyrobn.Autoencoder(64, latent_dim=2, hidden=(16,)).to(device)
    ae.save(tmp_path / "ae.pt")
    loaded_ae = pyrobn.Autoencoder.load(tmp_path / "ae.pt", map_location=device)
    torch.testing.assert_close(loaded_ae.reconstruct(x), ae.reconstruct(x), rtol=0, atol=0)


def test_conditional_elbo_is_its_model_guide_elbo(device, digits_cpu):
    x, y = digits_cpu.x_test[:40].to(device), digits_cpu.y_test[:40].to(device)
    with seeded(0):
        cvae = pyrobn.ConditionalVAE(64, n_classes=10, latent_dim=2, hidden=(16,)).to(device)
    with seeded(3):
        loss = pyro.infer.Trace_ELBO().loss(cvae.model, cvae.guide, x, y)
    assert -float(cvae.elbo(x, y, seed=3).sum()) == pytest.approx(loss, rel=1e-5)
    assert cvae.sample(6, y=4).shape == (6, 64)
    assert set(torch.unique(cvae.sample(6, y=4)).tolist()) <= {0.0, 1.0}
    assert cvae.reconstruct(x, y).shape == (40, 64)
