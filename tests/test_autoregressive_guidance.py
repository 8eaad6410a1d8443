"""The class in every layer of the causal networks, and classifier-free guidance of the
AutoregressiveModel (eq. 19; :mod:`pyrobn.models.neural`)."""

from __future__ import annotations

import math

import pytest
import torch
from common import assert_close, enumerate_states
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chisquare

import pyrobn
from pyrobn.errors import ConfigurationError, OutOfSupportError
from pyrobn.models.neural import class_context, guided, null_context
from pyrobn.nn import CausalConvNet, PixelCNN
from pyrobn.random import seeded

FAST = settings(max_examples=20, deadline=None)


def _pixelcnn(context_dim: int, layers: int = 3) -> PixelCNN:
    with seeded(0):
        return PixelCNN((4, 4), 1, 6, 5, layers=layers, context_dim=context_dim).eval()


def _conv(context_dim: int, layers: int = 3) -> CausalConvNet:
    with seeded(0):
        return CausalConvNet(1, 6, 5, layers=layers, context_dim=context_dim).eval()


def _model(network: str = "made", dim: int = 2, **kwargs) -> pyrobn.AutoregressiveModel:
    options = {"network": network, "hidden": 8, "layers": 2, "n_classes": 3, "p_uncond": 0.2}
    with seeded(0):
        return pyrobn.AutoregressiveModel(dim, "categorical", 3, **(options | kwargs))


# ---------------------------------------------------------------- the class in every layer
@pytest.mark.parametrize("make", [_pixelcnn, _conv], ids=["pixelcnn", "conv"])
@pytest.mark.parametrize("layer", [0, 1, 2])
def test_each_layer_alone_carries_the_class(make, layer):
    """Only layer k's projection V_k kept: changing y still changes the output, at the
    first position (which sees no pixel, only the class) and at a later one."""
    net = make(2)
    with torch.no_grad():
        w = net.context.weight.unflatten(0, (net.layers, -1))
        keep = torch.zeros_like(w)
        keep[layer] = 1
        net.context.weight.mul_(keep.flatten(0, 1))
    x = torch.randn(1, 16, 1)
    a = net(x, torch.tensor([[1.0, 0.0]]))
    b = net(x, torch.tensor([[0.0, 1.0]]))
    for t in (0, 9):
        assert not torch.allclose(a[0, t], b[0, t]), f"y does not reach position {t}"
    with torch.no_grad():
        net.context.weight.zero_()
    assert torch.equal(net(x, torch.tensor([[1.0, 0.0]])), net(x, torch.tensor([[0.0, 1.0]])))


@pytest.mark.parametrize("make", [_pixelcnn, _conv], ids=["pixelcnn", "conv"])
def test_without_a_context_the_network_is_unchanged(make):
    """context_dim = 0: no context parameter (one V_k per layer and stack otherwise), and
    a conditional network with its projections zeroed computes the same function."""
    plain, conditional = make(0), make(3)
    count = sum(p.numel() for p in plain.parameters())
    stacks = 2 if isinstance(plain, PixelCNN) else 1
    assert sum(p.numel() for p in conditional.parameters()) == count + 3 * 3 * stacks * 6
    assert not any("context" in key for key in plain.state_dict())
    state = {k: v for k, v in conditional.state_dict().items() if "context" not in k}
    plain.load_state_dict(state)  # the same parameters, strictly
    with torch.no_grad():
        conditional.context.weight.zero_()
    x = torch.randn(2, 16, 1)
    assert torch.equal(plain(x), conditional(x, torch.eye(3)[[0, 2]]))
    assert torch.equal(plain(x), plain(x, torch.eye(3)[[0, 2]]))  # no slot: context unused


# ---------------------------------------------------------------- the shared helpers
def test_label_dropout_rate_and_the_null_slot():
    labels = torch.arange(4).repeat(2500)
    with seeded(1):
        c = class_context(labels, 4, torch.float32, p_uncond=0.3)
    dropped = c[:, -1] == 1
    assert torch.equal(c.sum(-1), torch.ones(len(labels)))
    kept = ~dropped
    assert torch.equal(c[kept, :4].argmax(-1), labels[kept])
    p, n = 0.3, len(labels)
    assert abs(int(dropped.sum()) - p * n) < 5 * math.sqrt(n * p * (1 - p))
    assert torch.equal(class_context(labels, 4, torch.float32)[:, -1], torch.zeros(n))
    assert torch.equal(null_context(c), class_context(None, 4, torch.float32, shape=(n,)))


def test_guided_is_the_weighted_difference():
    c = class_context(torch.tensor([0, 2]), 3, torch.float64)
    weights = torch.randn(4, 5, dtype=torch.float64)

    def f(context):
        return context @ weights

    assert torch.equal(guided(f, c, 0.0), f(c))
    assert_close(guided(f, c, 1.5), 2.5 * f(c) - 1.5 * f(null_context(c)), rtol=1e-12)


# ---------------------------------------------------------------- guided sampling
@pytest.mark.parametrize("network", ["made", "pixelcnn"])
def test_guided_logits_are_the_combination_of_both_passes(network):
    model = _model(network, dim=4)
    u = torch.randint(0, 3, (5, 4)).float()
    c = model._context(torch.tensor([0, 1, 2, 1, 0]), 5)
    null = torch.zeros(5, 4)
    null[:, -1] = 1
    w = 1.7
    for t in range(4):
        a = model._params(u, c)[:, t]
        b = model._params(u, null)[:, t]
        want = torch.log_softmax((1 + w) * a - w * b, -1)  # logits up to a constant
        got = torch.log_softmax(model._level_logits(u, c, t, w), -1)
        assert_close(got, want, rtol=1e-5, atol=1e-5)
        assert not torch.allclose(got, torch.log_softmax(a, -1), atol=1e-3)


def test_guidance_zero_draws_the_unguided_samples():
    model = _model("pixelcnn", dim=4, guidance=2.0)
    unguided = _model("pixelcnn", dim=4)  # the same weights (same seed), default w = 0
    assert torch.equal(model.net.context.weight, unguided.net.context.weight)
    y = torch.tensor([0, 1, 2] * 20)
    draws = model.sample(60, y=y, guidance=0.0, seed=3)
    assert torch.equal(draws, unguided.sample(60, y=y, seed=3))
    assert torch.equal(draws, unguided.sample(60, y=y, guidance=0, seed=3))
    assert not torch.equal(draws, model.sample(60, y=y, seed=3))  # default w = 2


def test_guided_samples_follow_the_guided_conditionals():
    """Chi-square of 4000 guided draws of (x1, x2) against Π_t softmax(ℓ_t), enumerated."""
    model = _model("made", dim=2)
    with torch.no_grad(), seeded(1):  # make y and ∅ disagree clearly
        model.net.context_out.weight.normal_(0, 1.0)
        model.net.context_in.weight.normal_(0, 1.0)
    w, y = 1.5, 2
    states = torch.tensor(enumerate_states([3, 3]), dtype=torch.float32)
    c = model._context(y, len(states))
    with torch.no_grad():
        log_p = sum(
            torch.log_softmax(model._level_logits(states, c, t, w), -1)
            .gather(-1, states[:, t : t + 1].long())
            .squeeze(-1)
            for t in range(2)
        )
        p = log_p.exp()
        exact = model.nll(states, y).neg().exp()
    assert_close(p.sum(), torch.tensor(1.0), rtol=1e-5)
    assert float((p - exact).abs().max()) > 0.02  # guidance changed the distribution
    draws = model.sample(4000, y=y, guidance=w, seed=0).long()
    counts = torch.bincount(draws[:, 0] * 3 + draws[:, 1], minlength=9)
    expected = 4000 * p.double() / p.double().sum()
    assert chisquare(counts.double().numpy(), expected.numpy()).pvalue > 1e-3


def test_log_prob_stays_the_exact_conditional_with_the_real_label():
    model = _model("made", dim=2)
    states = torch.tensor(enumerate_states([3, 3]), dtype=torch.float32)
    for y in range(3):
        assert_close(model.log_prob(states, y).exp().sum(), torch.tensor(1.0), rtol=1e-5)
    a, b = model.log_prob(states, 0), model.log_prob(states, 1)
    assert not torch.allclose(a, b)


@FAST
@given(label=st.one_of(st.integers(3, 40), st.integers(-40, -1)))
def test_the_null_class_is_never_a_user_label(label):
    model = _model()
    with pytest.raises(OutOfSupportError, match="y"):
        model.sample(2, y=label)
    with pytest.raises(OutOfSupportError, match="y"):
        model.log_prob(torch.zeros(1, 2), torch.tensor([label]))
    c = model._context(torch.arange(3), 3)
    assert c.shape == (3, 4) and not bool(c[:, -1].any())


def test_training_drops_labels_and_evaluation_does_not(monkeypatch):
    model = _model("made", dim=2, p_uncond=0.5)
    x = torch.randint(0, 3, (400, 2)).float()
    y = torch.randint(0, 3, (400,))
    seen = []
    original = model._log_prob

    def spy(value, context):
        seen.append(context)
        return original(value, context)

    monkeypatch.setattr(model, "_log_prob", spy)
    model.model(x, y)
    assert not bool(seen[-1][:, -1].any())  # evaluation mode: the real labels
    model.train()
    with seeded(0):
        model.model(x, y)
    model.eval()
    dropped = seen[-1][:, -1] == 1
    assert 100 < int(dropped.sum()) < 300
    kept = ~dropped
    assert torch.equal(seen[-1][kept, :3].argmax(-1), y[kept])


def test_fit_with_label_dropout_validates_with_the_real_labels():
    x = torch.randint(0, 3, (40, 2)).float()
    y = torch.randint(0, 3, (40,))
    model = _model("made", dim=2, p_uncond=0.3)
    model.fit(x[:30], y[:30], epochs=2, batch_size=10, x_val=x[30:], y_val=y[30:], seed=0,
              progress=False)  # fmt: skip
    assert_close(model.nll(x[30:], y[30:]).mean(), min(model.validation_nll_), rtol=1e-5)


def test_save_and_load_keep_the_guidance_options(tmp_path):
    model = _model("pixelcnn", dim=4, p_uncond=0.25, guidance=1.5)
    model.save(tmp_path / "guided.pt")
    back = pyrobn.AutoregressiveModel.load(tmp_path / "guided.pt")
    assert (back.p_uncond, back.guidance) == (0.25, 1.5)
    x, y = torch.randint(0, 3, (6, 4)).float(), torch.randint(0, 3, (6,))
    assert torch.equal(back.log_prob(x, y), model.log_prob(x, y))
    assert torch.equal(back.sample(8, y=1, seed=4), model.sample(8, y=1, seed=4))
    assert torch.equal(
        back.sample(8, y=1, guidance=0.5, seed=4), model.sample(8, y=1, guidance=0.5, seed=4)
    )


# ---------------------------------------------------------------- bad options
@FAST
@given(
    st.one_of(
        st.floats(max_value=-1e-9),
        st.floats(min_value=1.0),
        st.just(math.nan),
        st.booleans(),
        st.text(max_size=2),
        st.none(),
    )
)
def test_bad_p_uncond_is_named(p_uncond):
    with pytest.raises(ConfigurationError, match="p_uncond"):
        _model(p_uncond=p_uncond)


@FAST
@given(
    st.one_of(
        st.floats(max_value=-1e-9),
        st.sampled_from([math.nan, math.inf, -math.inf]),
        st.booleans(),
        st.text(max_size=2),
    )
)
def test_bad_guidance_is_named(guidance):
    with pytest.raises(ConfigurationError, match="guidance"):
        _model(guidance=guidance)
    with pytest.raises(ConfigurationError, match="guidance"):
        _model().sample(2, y=0, guidance=guidance)


@FAST
@given(st.floats(min_value=1e-3, max_value=10.0))
def test_guidance_needs_a_model_trained_for_it(w):
    with pytest.raises(ConfigurationError, match="class-conditional"):
        _model(n_classes=0, p_uncond=0.0, guidance=w)
    with pytest.raises(ConfigurationError, match="class-conditional"):
        _model(n_classes=0, p_uncond=0.0).sample(2, guidance=w)
    with pytest.raises(ConfigurationError, match="p_uncond"):
        _model(p_uncond=0.0, guidance=w)
    with pytest.raises(ConfigurationError, match="p_uncond"):
        _model(p_uncond=0.0).sample(2, y=0, guidance=w)
    with pytest.raises(ConfigurationError, match="discrete likelihood"):
        with seeded(0):
            pyrobn.AutoregressiveModel(2, "normal", hidden=4, n_classes=2, p_uncond=0.1,
                                       guidance=w)  # fmt: skip


def test_label_dropout_needs_classes():
    with pytest.raises(ConfigurationError, match="p_uncond"):
        _model(n_classes=0, p_uncond=0.1)
