"""NormalizingFlow (notes 2.2.2.5, eq. 18, Figura 12) and the flow guides of pyrobn.infer."""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from common import assert_close
from hypothesis import given, settings
from hypothesis import strategies as st
from pyro.infer import Trace_ELBO
from scipy.stats import chisquare

import pyrobn
from pyrobn.errors import ConfigurationError, NonFiniteError, OutOfSupportError, ShapeError
from pyrobn.infer import fit_svi
from pyrobn.infer.flow_guide import AmortizedFlowGuide, AutoFlowGuide, iwae_bound
from pyrobn.infer.params import owned_params
from pyrobn.models.flow import TRANSFORMS

KINDS = list(TRANSFORMS)


def tiny(dim=2, perturb=0.3, **kw):
    torch.manual_seed(0)
    kw.setdefault("n_transforms", 2)
    kw.setdefault("hidden", (8,))
    kw.setdefault("bins", 4)
    flow = pyrobn.NormalizingFlow(dim, **kw)
    with torch.no_grad():  # a random flow away from the identity
        for p in flow.flow.parameters():
            p.add_(perturb * torch.randn_like(p))
    return flow


def grid2d(low, high, n):
    g = torch.linspace(low, high, n, dtype=torch.float64)
    pts = torch.stack(torch.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    return pts, float(g[1] - g[0])


# ---------------------------------------------------------------- eq. 18 is a density
@pytest.mark.parametrize("kind", KINDS)
def test_density_integrates_to_one_on_a_grid(kind):
    flow = tiny(transform=kind, n_classes=2).double()
    pts, h = grid2d(-10, 10, 201)
    for label in (0, 1):
        density = flow.log_prob(pts, y=torch.full((len(pts),), label)).detach().exp()
        assert_close(density.sum() * h * h, 1.0, rtol=3e-3)


@pytest.mark.parametrize("kind", KINDS)
def test_log_det_equals_the_autograd_jacobian(kind):
    flow = tiny(dim=3, transform=kind, levels=5).double()
    v = 5 * torch.rand(4, 3, dtype=torch.float64)
    fd = flow.distribution()
    z, ladj = fd.to_latent(v)
    for i in range(4):
        jac = torch.autograd.functional.jacobian(lambda row: fd.to_latent(row[None])[0][0], v[i])
        assert_close(ladj[i], torch.linalg.slogdet(jac).logabsdet, rtol=1e-8, atol=1e-8)
    # and eq. 18: log p(v) = log N(f⁻¹(v); 0, I) + log|det D f⁻¹(v)|
    base = dist.Normal(0.0, 1.0).log_prob(z).sum(-1)
    assert_close(flow.log_prob(v), base + ladj, rtol=1e-10)


@pytest.mark.parametrize("kind", ["spline_coupling", "affine_autoregressive"])
def test_inverse_and_decode_are_inverse_maps(kind):
    flow = tiny(dim=3, transform=kind).double()
    flow.shift.fill_(1.0)
    flow.scale.fill_(3.0)
    x = torch.randn(6, 3, dtype=torch.float64)
    assert_close(flow.decode(flow.inverse(x)), x, rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------- dequantisation
def discrete_probabilities(flow, n=200):
    """P(x) = ∫ p_v(x + u) du on the unit cell of every x in {0..L-1}^2 (midpoint rule)."""
    L = flow.levels
    t = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    u = torch.stack(torch.meshgrid(t, t, indexing="ij"), -1).reshape(-1, 2)
    probs, mean_log = torch.zeros(L, L, dtype=torch.float64), torch.zeros(L, L, dtype=torch.float64)
    with torch.no_grad():
        for a in range(L):
            for b in range(L):
                lp = flow.log_prob(u + torch.tensor([a, b], dtype=torch.float64))
                probs[a, b] = lp.exp().mean()
                mean_log[a, b] = lp.mean()
    return probs, mean_log


@pytest.mark.parametrize("dequantization", ["uniform", "variational"])
def test_dequantised_bound_is_above_the_exact_discrete_nll(dequantization):
    flow = tiny(levels=3, dequantization=dequantization, perturb=0.1).double()
    probs, mean_log = discrete_probabilities(flow)
    assert_close(probs.sum(), 1.0, rtol=1e-3)  # Σ_x P(x) = 1: the cells tile (0, L)^2
    x = torch.tensor([[a, b] for a in range(3) for b in range(3)], dtype=torch.float64)
    exact = -probs.log().flatten()
    draws = flow.nll(x.repeat(3000, 1), num_samples=1, seed=0).reshape(3000, 9)
    bound, stderr = draws.mean(0), draws.std(0) / 3000**0.5
    assert bool((bound > exact - 4 * stderr).all()), (bound, exact)
    if dequantization == "uniform":  # E_u[-log p_v(x + u)] by quadrature
        assert bool(((bound + mean_log.flatten()).abs() < 4 * stderr + 0.03).all())
    # importance weighting (K = 64) tightens the bound towards the exact NLL
    iw = flow.nll(x.repeat(50, 1), num_samples=64, seed=1).reshape(50, 9)
    tight, tight_se = iw.mean(0), iw.std(0) / 50**0.5
    assert bool((tight <= bound + 4 * stderr).all())
    assert bool((tight > exact - 4 * tight_se - 0.01).all()), (tight, exact)
    assert float((tight - exact).mean()) < float((bound - exact).mean())


def test_samples_match_the_discrete_probabilities():
    flow = tiny(levels=3, perturb=0.1).double()
    probs, _ = discrete_probabilities(flow)
    draws = flow.sample(6000, seed=4)
    assert set(draws.unique().tolist()) <= {0.0, 1.0, 2.0}
    counts = torch.bincount((draws[:, 0] * 3 + draws[:, 1]).long(), minlength=9).double()
    expected = 6000 * probs.flatten() / probs.sum()
    assert chisquare(counts.numpy(), expected.numpy()).pvalue > 1e-3


def test_the_elbo_is_the_bound_and_training_raises_it():
    data = pyrobn.datasets.book_digits(levels=3, device="cpu")
    x = data.x_train[:60, :4].float()
    flow = tiny(dim=4, levels=3, dequantization="variational")
    pyro.set_rng_seed(0)
    before = torch.stack([flow.nll(x, seed=s) for s in range(20)]).mean()
    elbo = -torch.stack(
        [torch.tensor(Trace_ELBO().loss(flow.model, flow.guide, x)) for _ in range(20)]
    )
    assert_close(-elbo.mean() / 60, before.mean(), rtol=0.02)
    flow.fit(x, steps=30, batch_size=None, lr=1e-2, seed=0, progress=False)
    after = flow.nll(x.repeat(20, 1), seed=0).mean()
    assert float(after) < float(before)
    assert flow.fit_result_.objective_name == "elbo" and flow.fit_result_.n_iter == 30
    names = owned_params(flow._pyro_name)
    assert any(".flow$$$" in n for n in names) and any(".dequantizer$$$" in n for n in names)


def test_continuous_fit_standardises_and_reports_the_exact_density():
    x, _ = pyrobn.datasets.swiss_roll(200, noise=0.5, seed=0, device="cpu")
    x2 = x[:, [0, 2]]
    flow = tiny(hidden=(16,))
    flow.fit(x2, steps=20, batch_size=100, seed=0, progress=False)
    assert flow.nll_kind == "exact"
    assert_close(flow.shift, x2.mean(0), rtol=1e-6)
    assert_close(flow.nll(x2), -flow.log_prob(x2), rtol=1e-6)
    exact = -flow.log_prob(x2).sum()
    assert_close(Trace_ELBO().loss(flow.model, flow.guide, x2), exact, rtol=1e-5)


# ---------------------------------------------------------------- files, seeds, graph
def test_save_and_load_are_exact(tmp_path):
    flow = tiny(dim=3, levels=4, dequantization="variational", n_classes=2)
    x = torch.randint(0, 4, (5, 3)).float()
    y = torch.tensor([0, 1, 1, 0, 1])
    flow.save(tmp_path / "flow.pt")
    loaded = pyrobn.NormalizingFlow.load(tmp_path / "flow.pt")
    assert torch.equal(
        flow.nll(x, y, num_samples=3, seed=1), loaded.nll(x, y, num_samples=3, seed=1)
    )
    assert torch.equal(flow.sample(4, y=1, seed=2), loaded.sample(4, y=1, seed=2))


def test_sampling_is_seeded_and_leaves_the_global_rng_alone():
    flow = tiny(levels=5)
    state = torch.get_rng_state()
    assert torch.equal(flow.sample(10, seed=3), flow.sample(10, seed=3))
    assert torch.equal(state, torch.get_rng_state())


def test_graph_is_figura_12():
    graph = tiny(levels=3, n_classes=2).graph()
    assert graph.parents("x") == ("v",) and set(graph.parents("v")) == {"z", "y"}
    assert graph.node("v").role == "deterministic"
    assert tiny().graph().parents("x") == ("z",)


# ---------------------------------------------------------------- bad input
@settings(max_examples=25, deadline=None)
@given(value=st.sampled_from([-1.0, 3.0, 0.5, math.nan, math.inf]), row=st.integers(0, 1))
def test_values_outside_the_levels_are_named(value, row):
    flow = tiny(levels=3)
    x = torch.zeros(2, 2)
    x[row, 1] = value
    error = NonFiniteError if not math.isfinite(value) else OutOfSupportError
    with pytest.raises(error, match=rf"\({row}, 1\)"):
        flow.nll(x)
    with pytest.raises(error):
        flow.inverse(x)


@settings(max_examples=20, deadline=None)
@given(value=st.sampled_from([-0.5, 3.0, 7.0, math.nan]))
def test_log_density_outside_the_support_raises(value):
    flow = tiny(levels=3)
    error = NonFiniteError if math.isnan(value) else OutOfSupportError
    with pytest.raises(error):
        flow.log_prob(torch.tensor([[1.0, value]]))


@settings(max_examples=20, deadline=None)
@given(shape=st.sampled_from([(2,), (3, 3), (1, 2, 2), (4, 1)]))
def test_wrong_shapes_raise(shape):
    with pytest.raises(ShapeError, match="2"):
        tiny().log_prob(torch.zeros(shape))
    with pytest.raises(ShapeError):
        tiny().decode(torch.zeros(shape))


@settings(max_examples=15, deadline=None)
@given(st.one_of(st.floats(max_value=0.0), st.just(math.nan), st.booleans()))
def test_bad_temperature_raises(temperature):
    with pytest.raises(ConfigurationError, match="temperature"):
        tiny().sample(3, temperature=temperature)


def test_bad_configuration_raises():
    with pytest.raises(ConfigurationError, match="transform"):
        pyrobn.NormalizingFlow(2, transform="planar")
    with pytest.raises(ConfigurationError, match="dequantization"):
        pyrobn.NormalizingFlow(2, levels=3, dequantization="gaussian")
    with pytest.raises(ConfigurationError, match="coupling"):
        pyrobn.NormalizingFlow(1)
    with pytest.raises(ConfigurationError, match="levels"):
        pyrobn.NormalizingFlow(2, levels=1)
    with pytest.raises(OutOfSupportError, match="y"):
        tiny(n_classes=2).sample(2, y=2)
    with pytest.raises(ConfigurationError, match="offset"):
        tiny(levels=3).inverse(torch.zeros(1, 2), offset=1.0)


# ---------------------------------------------------------------- flows as guides
def conjugate_model(y):
    mu = pyro.sample("mu", dist.Normal(torch.zeros(2), torch.ones(2)).to_event(1))
    with pyro.plate("data", y.shape[0]):
        pyro.sample("y", dist.Normal(mu, 0.5).to_event(1), obs=y)


def test_auto_flow_guide_goes_through_compare_guides():
    from pyrobn.infer import compare_guides

    y = torch.tensor([[1.0, -1.0], [0.8, -1.2], [1.2, -0.6]])
    precision = 1 + 3 / 0.25
    exact = dist.Normal(y.sum(0) / 0.25 / precision, precision**-0.5).to_event(1)
    cmp = compare_guides(
        conjugate_model,
        {"flow": AutoFlowGuide},
        y,
        steps=200,
        num_samples=300,
        elbo_particles=30,
        reference={"mu": exact},
    )
    result = cmp.results["flow"]
    assert result.method == "AutoFlowGuide"
    assert_close(result.draws["mu"].mean(0), exact.mean, atol=0.12)
    log_evidence = float(
        dist.MultivariateNormal(torch.zeros(3), 0.25 * torch.eye(3) + 1).log_prob(y.T).sum()
    )
    assert result.elbo < log_evidence + 0.1  # ELBO <= log p(y), up to Monte Carlo noise
    assert result.kl["mu"] < 0.1


def test_amortized_flow_guide_trains_a_vae():
    x = pyrobn.datasets.digits(binarize=True, device="cpu").x_train[:64]
    vae = pyrobn.VAE(64, latent_dim=2, hidden=(16,))
    guide = AmortizedFlowGuide(64, 2, hidden=(16,), flow_hidden=(8,))
    history = fit_svi(
        vae.model,
        guide,
        x,
        batch_size=32,
        steps=40,
        progress=False,
        seed=0,
        optim=pyro.optim.Adam({"lr": 1e-2}),
    )
    assert history.losses[-1] < history.losses[0]
    log_w = guide.log_weights(vae.model, x, num_samples=8)
    assert log_w.shape == (8, 64) and bool(torch.isfinite(log_w).all())
    assert bool((iwae_bound(log_w) >= log_w.mean(0) - 1e-5).all())  # IWAE >= ELBO per row
    with pytest.raises(ShapeError):
        guide(torch.zeros(3, 5))


# ---------------------------------------------------------------- early stopping
def test_conditional_early_stopping_on_the_book_digits_scores_with_the_labels(monkeypatch):
    # regression: validation must hand nll the labels (not one-hot rows) for n_classes > 0
    data = pyrobn.datasets.book_digits(device="cpu")
    xv, yv = data.x_val[:40], data.y_val[:40]
    with pyrobn.random.seeded(0):
        flow = pyrobn.NormalizingFlow(
            64, levels=17, n_transforms=1, hidden=(8,), bins=4, n_classes=10
        )
    calls, nll = [], flow.nll

    def spy(x, y=None, **kwargs):
        calls.append(y)
        return nll(x, y, **kwargs)

    monkeypatch.setattr(flow, "nll", spy)
    flow.fit(
        data.x_train[:64], data.y_train[:64], epochs=2, batch_size=32, x_val=xv, y_val=yv,
        val_samples=2, seed=0, progress=False,
    )  # fmt: skip
    monkeypatch.undo()
    assert len(calls) == len(flow.validation_nll_) == 2
    for y in calls:
        assert y.dtype == torch.long and torch.equal(y.cpu(), yv)
    best = min(flow.validation_nll_)
    # the best state is kept, scored with val_samples draws of u from seed 0
    assert_close(flow.nll(xv, yv, num_samples=2, seed=0).mean(), best, rtol=1e-5)
    # the labels move the score 10x past the tolerance above: wrong labels would fail it
    other = float(flow.nll(xv, (yv + 1) % 10, num_samples=2, seed=0).mean())
    assert abs(other - best) > 1e-4 * abs(best)


def test_validation_labels_are_checked_and_named():
    data = pyrobn.datasets.book_digits(device="cpu")
    flow = pyrobn.NormalizingFlow(64, levels=17, n_transforms=1, hidden=(8,), n_classes=10)
    x, y, xv = data.x_train[:8], data.y_train[:8], data.x_val[:4]
    one_hot = torch.nn.functional.one_hot(data.y_val[:4], 10)
    fit = {"steps": 1, "progress": False}
    with pytest.raises(ShapeError, match="y_val"):
        flow.fit(x, y, x_val=xv, y_val=one_hot, **fit)
    with pytest.raises(ConfigurationError, match="y_val"):
        flow.fit(x, y, x_val=xv, **fit)
    with pytest.raises(OutOfSupportError, match="y_val"):
        flow.fit(x, y, x_val=xv, y_val=[0, 1, 2, 10], **fit)
