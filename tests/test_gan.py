"""GAN (notes 2.2.2.3, Figura 10) and fit_svi's self-updating losses."""

from __future__ import annotations

import math

import numpy as np
import pyro
import pyro.poutine as poutine
import pytest
import torch

import pyrobn
from pyrobn.errors import TrainingDiverged
from pyrobn.infer.optim import FusedAdam
from pyrobn.infer.svi import fit_svi
from pyrobn.models.gan import GAN, AdversarialLoss, ReferenceGAN, train_reference
from tests.common import assert_close


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    data = load_digits()
    return torch.tensor(data.data[:200]).long(), torch.tensor(data.target[:200]).long()


def _small(**kwargs) -> GAN:
    torch.manual_seed(0)
    return GAN(64, **{"latent_dim": 4, "hidden": (32,), "levels": 17, **kwargs})


# ---------------------------------------------------------------------- the game


@pytest.mark.parametrize(
    "config",
    [{}, {"n_classes": 10, "dropout": 0.3}, {"levels": None}],
    ids=["levels", "conditional-dropout", "continuous"],
)
def test_losses_equal_the_plain_pytorch_game_step_for_step(config, digits, device):
    """Same weights, data and seed: fit's L_D and L_G per step equal the plain-PyTorch
    loop's (two Adam optimisers, BCE with logits), and so do the final weights."""
    x, y = digits[0].to(device), digits[1].to(device)
    gan = _small(**config).to(device)
    if gan.levels is None:
        noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
        x = x.float() + noise.to(device)
        with torch.no_grad():  # the standardisation fit would set, given to the reference too
            gan.shift.copy_(x.mean(0))
            gan.scale.copy_(x.std(0))
            gan.standardized.fill_(True)
    y = y if gan.n_classes else None
    ref = ReferenceGAN.like(gan)
    gan.fit(x, y, steps=12, batch_size=64, lr=1e-3, seed=3, progress=False)
    d_ref, g_ref = train_reference(ref, x, y, steps=12, batch_size=64, lr=1e-3, seed=3)
    np.testing.assert_allclose(gan.losses_["discriminator"], d_ref, rtol=1e-4)
    np.testing.assert_allclose(gan.losses_["generator"], g_ref, rtol=1e-4)
    np.testing.assert_allclose(
        gan.fit_result_.objective, [-(d + g) for d, g in zip(d_ref, g_ref)], rtol=1e-4
    )
    for a, b in zip(gan.generator.parameters(), ref.generator.parameters()):
        assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_the_step_plays_the_pyro_programs(digits):
    """The game's fast path is the Pyro programs: on one seed its generated rows are the
    generator model's site "x", and its log q(y | x) the discriminator program's."""
    x, y = digits
    gan = _small(n_classes=10, dropout=0.0)
    game = AdversarialLoss(gan)
    with pyrobn.random.seeded(4):
        trace = poutine.trace(gan.model).get_trace(x, y, 50)
    with pyrobn.random.seeded(4):
        real, fake, c = game._batch(gan.model, x, y, 50)
    assert torch.equal(trace.nodes["x"]["value"], fake)
    idx = trace.nodes["data"]["value"]
    assert torch.equal(c.argmax(-1), y[idx])
    assert bool(
        ((real + 1) * 17 / 2 - x[idx]).ge(0).all() & ((real + 1) * 17 / 2 - x[idx]).lt(1).all()
    )
    labels = torch.ones(50)
    program = poutine.trace(gan.discriminator).get_trace(fake, labels, c)
    assert_close(program.log_prob_sum() / 50, game._log_q(fake, 1.0, c), rtol=1e-6)


def test_divergence_stops_with_the_last_good_parameters(digits):
    """After three good steps the learning rate jumps to 1e25: the next step's updates
    blow the weights up, fit stops with TrainingDiverged naming that step, and the model
    keeps the (finite) parameters it had after the last good step."""
    x = digits[0]
    gan = _small()
    optim = FusedAdam(lr=1e-3, betas=(0.5, 0.999))
    seen = []

    def callback(step, loss):
        seen.append([p.detach().clone() for p in gan.parameters()])
        if step == 2:
            for group in optim.optimizer.param_groups:
                group["lr"] = 1e25

    with pytest.raises(TrainingDiverged) as info:
        gan.fit(x, steps=20, optim=optim, seed=0, progress=False, callback=callback)
    assert info.value.step == 3 and len(seen) == 3
    for got, want in zip(gan.parameters(), seen[-1]):
        assert torch.equal(got, want)
        assert bool(torch.isfinite(got).all())


def test_checkpoint_resume_reproduces_the_uninterrupted_game(tmp_path, digits):
    x = digits[0]
    whole = _small()
    whole.fit(x, steps=8, batch_size=50, seed=2, progress=False)
    first = _small()
    path = tmp_path / "gan.ckpt"
    first.fit(x, steps=5, batch_size=50, seed=2, progress=False, checkpoint=path)
    again = _small()
    again.fit(x, steps=8, batch_size=50, seed=2, progress=False, checkpoint=path, resume=True)
    np.testing.assert_allclose(again.fit_result_.objective, whole.fit_result_.objective, rtol=1e-6)
    for a, b in zip(again.parameters(), whole.parameters()):
        assert torch.equal(a, b)


def test_the_game_learns_a_gaussian():
    """1-D data N(3, 0.5²): after a short game the samples' mean and sd are close."""
    data = 3 + 0.5 * torch.randn(2000, 1, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    gan = GAN(1, latent_dim=2, hidden=(16, 16))
    gan.fit(data, steps=600, batch_size=128, lr=2e-3, seed=0, progress=False)
    s = gan.sample(4000, seed=1)
    assert abs(float(s.mean()) - 3) < 0.15, float(s.mean())
    assert 0.3 < float(s.std()) < 0.75, float(s.std())


# ---------------------------------------------------------------------- fit_svi's hook


class _Drift:
    """A self-updating loss: each step adds 1 to the parameter; at ``bad`` it makes it NaN."""

    def __init__(self, bad: int | None) -> None:
        self.bad, self.calls = bad, 0

    def _model(self):
        return pyro.param("drift_w", torch.zeros(3))

    def loss(self, model, guide, *args, **kwargs):
        return float(model().sum())

    def update(self, model, guide, optim, *args, **kwargs):
        w = model()
        value = float(w.sum())
        with torch.no_grad():
            w.add_(math.nan if self.calls == self.bad else 1.0)
        self.calls += 1
        return value


def test_self_updating_loss_keeps_the_guard():
    """fit_svi with a loss.update: the history holds the values before each step; a step
    that makes a parameter NaN stops the run with the values from before that step."""
    loss = _Drift(bad=None)
    history = fit_svi(lambda: loss._model(), lambda: None, loss=loss, steps=4, progress=False)
    assert history.losses == [0.0, 3.0, 6.0, 9.0]
    assert torch.equal(pyro.param("drift_w").detach(), torch.full((3,), 4.0))
    pyro.clear_param_store()
    loss = _Drift(bad=2)
    with pytest.raises(TrainingDiverged) as info:
        fit_svi(lambda: loss._model(), lambda: None, loss=loss, steps=5, progress=False)
    assert info.value.step == 2
    assert torch.equal(pyro.param("drift_w").detach(), torch.full((3,), 2.0))


# ---------------------------------------------------------------------- sampling, files


def test_samples_are_levels_and_seeded(digits):
    gan = _small(n_classes=10)
    before = torch.get_rng_state()
    a = gan.sample(6, y=[0, 1, 2, 3, 4, 5], seed=1)
    assert a.dtype == torch.long and a.shape == (6, 64)
    assert int(a.min()) >= 0 and int(a.max()) <= 16
    assert torch.equal(a, gan.sample(6, y=[0, 1, 2, 3, 4, 5], seed=1))
    assert torch.equal(torch.get_rng_state(), before)
    raw = gan.sample(6, y=3, seed=1, raw=True)
    assert float(raw.abs().max()) < 1
    assert torch.equal(gan.to_data_scale(raw), gan.sample(6, y=3, seed=1))


def test_save_load_is_exact(tmp_path, digits):
    x, y = digits
    gan = _small(n_classes=10)
    gan.fit(x, y, steps=3, seed=0, progress=False)
    gan.save(tmp_path / "gan.pt")
    back = GAN.load(tmp_path / "gan.pt")
    assert torch.equal(back.sample(5, y=2, seed=0), gan.sample(5, y=2, seed=0))
    assert torch.equal(
        back.discriminate(x[:5], y=y[:5], seed=0), gan.discriminate(x[:5], y=y[:5], seed=0)
    )


def test_graph_is_figura_10():
    g = _small().graph()
    assert g.parents("x") == ("z", "theta")
    assert g.d_separated("z", "y_real", given=["x"])  # the classifier only sees x
    assert pyrobn.GAN is GAN


def test_a_deleted_gan_releases_its_parameters(digits):
    import gc

    from pyrobn.infer.params import owned_params

    gan = _small()
    gan.fit(digits[0], steps=2, seed=0, progress=False)
    name = gan._pyro_name
    assert len(owned_params(name)) == len(list(gan.parameters()))
    del gan
    gc.collect()
    assert owned_params(name) == []
