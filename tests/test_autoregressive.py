"""AutoregressiveModel and TextAutoregressiveModel (notes 2.2.2.1, eq. 15, Figura 8)."""

from __future__ import annotations

import math

import pyro
import pytest
import torch
from common import assert_close, enumerate_states
from hypothesis import given, settings
from hypothesis import strategies as st
from pyro.infer import Trace_ELBO
from scipy.stats import chisquare

import pyrobn
from pyrobn.errors import (
    CheckpointError,
    ConfigurationError,
    NonFiniteError,
    OutOfSupportError,
    ShapeError,
)
from pyrobn.nn import MADE, CausalConvNet, CausalTransformer, PixelCNN

NETWORKS_1D = ["made", "conv", "transformer"]
DISCRETE = [("categorical", 3), ("discretized_logistic", 4), ("bernoulli", None)]


def tiny(likelihood="categorical", levels=3, network="made", dim=3, **kw):
    torch.manual_seed(0)
    return pyrobn.AutoregressiveModel(
        dim, likelihood, levels, network=network, hidden=8, layers=2, heads=2, **kw
    )


def chi2_pvalue(counts: torch.Tensor, p: torch.Tensor) -> float:
    """Pearson's chi-square test of observed counts against probabilities p."""
    p = p.double() / p.double().sum()
    return float(chisquare(counts.double().numpy(), (counts.sum() * p).numpy()).pvalue)


def all_states(model):
    L = model.conditional.levels
    return torch.tensor(enumerate_states([L] * model.data_dim), dtype=torch.float32)


# ---------------------------------------------------------------- networks are causal
@pytest.mark.parametrize(
    "net",
    [
        MADE(12, 2, (16, 16), 3, context_dim=2),
        CausalConvNet(2, 4, 3, layers=3, context_dim=2),
        PixelCNN((3, 4), 2, 4, 3, layers=3, context_dim=2),
        CausalTransformer(2, 3, d_model=8, heads=2, layers=2, max_length=12, context_dim=2),
    ],
    ids=["made", "conv", "pixelcnn", "transformer"],
)
def test_output_t_depends_on_inputs_before_t_only(net):
    net.eval()
    x = torch.randn(1, 12, 2)
    c = torch.randn(1, 2)
    jac = torch.autograd.functional.jacobian(lambda v: net(v, c), x)  # (1, T, P, 1, T, C)
    depends = jac.abs().sum(dim=(0, 2, 3, 5)) > 0  # [t_out, s_in]
    later = torch.arange(12)[None, :] >= torch.arange(12)[:, None]
    assert not bool((depends & later).any()), "an output sees its own or a later input"
    assert bool(depends[-1].any()) and not bool(depends[0].any())


def test_pixelcnn_has_no_blind_spot():
    net = PixelCNN((5, 5), 1, 4, 2, layers=4).eval()
    x = torch.randn(1, 25, 1)
    jac = torch.autograd.functional.jacobian(lambda v: net(v), x)
    seen = jac.abs().sum(dim=(0, 2, 3, 5))[12] > 0  # the centre pixel (2, 2)
    assert bool(seen[:12].all()), "the centre pixel misses an earlier pixel (blind spot)"


# ---------------------------------------------------------------- exact likelihood
@pytest.mark.parametrize("network", NETWORKS_1D)
@pytest.mark.parametrize(("likelihood", "levels"), DISCRETE)
def test_probabilities_sum_to_one_by_enumeration(likelihood, levels, network):
    model = tiny(likelihood, levels, network, n_classes=2, order=[2, 0, 1])
    xs = all_states(model)
    for label in (0, 1):
        p = model.log_prob(xs, y=torch.full((len(xs),), label)).double().exp()
        assert_close(p.sum(), 1.0, rtol=1e-5)


def test_pixelcnn_probabilities_sum_to_one():
    model = tiny(network="pixelcnn", dim=4, levels=2, image_shape=(2, 2))
    assert_close(model.log_prob(all_states(model)).double().exp().sum(), 1.0, rtol=1e-5)


def test_log_prob_is_the_chain_rule_of_the_conditionals():
    """log p(x) = Σ_t log p(x_t | x_<t), each conditional a normalised row (eq. 15)."""
    model = tiny("categorical", 3, "made", order=[1, 2, 0])
    x = torch.tensor([[2.0, 0.0, 1.0]])
    u = x[:, model.order]
    theta = model._params(u, None)
    rows = torch.log_softmax(theta, -1)[0]
    assert_close(rows.exp().sum(-1), torch.ones(3), rtol=1e-6)
    chain = sum(rows[t, int(u[0, t])] for t in range(3))
    assert_close(model.log_prob(x)[0], chain, rtol=1e-6)
    # the first variable in the order has no parent: its row is the same for every x
    other = torch.tensor([[0.0, 1.0, 2.0]])[:, model.order]
    assert_close(model._params(other, None)[0, 0], theta[0, 0], rtol=1e-6)


@pytest.mark.parametrize("likelihood", ["normal", "logistic_mixture"])
def test_continuous_density_integrates_to_one(likelihood):
    model = tiny(likelihood, None, "made", dim=2, components=2)
    model.shift.fill_(0.5)
    model.scale.fill_(2.0)
    grid = torch.linspace(-25, 25, 801)
    xs = torch.stack(torch.meshgrid(grid, grid, indexing="ij"), -1).reshape(-1, 2)
    density = model.log_prob(xs).double().exp()
    assert_close(density.sum() * (grid[1] - grid[0]) ** 2, 1.0, rtol=2e-3)


def test_the_elbo_is_the_exact_log_likelihood():
    """No latent: the SVI loss is -log p(x), scaled by N / B under subsampling."""
    model = tiny("categorical", 3, "conv", dim=4)
    x = torch.randint(0, 3, (10, 4)).float()
    exact = model.log_prob(x).sum()
    assert_close(Trace_ELBO().loss(model.model, model.guide, x), -exact, rtol=1e-6)
    with pyro.poutine.trace() as tr:
        model.model(x, None, 4)
    idx = tr.trace.nodes["data"]["value"]
    loss = Trace_ELBO().loss(pyro.poutine.replay(model.model, tr.trace), model.guide, x, None, 4)
    assert_close(loss, -model.log_prob(x[idx]).sum() * 10 / 4, rtol=1e-5)


# ---------------------------------------------------------------- sampling
def exact_tempered(model, temperature):
    """p_T(x) = Π_t softmax(log p(x_t | x_<t) / T) by enumeration."""
    xs = all_states(model)
    u = xs[:, model.order]
    logits = model.conditional.level_log_probs(model._params(u, None)) / temperature
    rows = torch.log_softmax(logits, -1).gather(-1, u.long().unsqueeze(-1)).squeeze(-1)
    return xs, rows.sum(-1).double().exp().detach()


@pytest.mark.parametrize(
    ("network", "temperature"), [("made", 1.0), ("conv", 0.5), ("transformer", 2.0)]
)
def test_samples_follow_the_tempered_model(network, temperature):
    model = tiny("categorical", 3, network, dim=2, order=[1, 0])
    with torch.no_grad():  # sharper conditionals, so that temperatures differ clearly
        model.net.out.weight.mul_(4)
        model.net.out.bias.copy_(3 * torch.randn(model.net.out.bias.shape))
    _, p = exact_tempered(model, temperature)
    draws = model.sample(6000, temperature=temperature, seed=1)
    index = (draws[:, 0] * 3 + draws[:, 1]).long()
    counts = torch.bincount(index, minlength=9).double()
    assert chi2_pvalue(counts, p) > 1e-3
    if temperature != 1.0:  # and not the untempered model
        _, p1 = exact_tempered(model, 1.0)
        assert chi2_pvalue(counts, p1) < 1e-3


def test_completion_draws_from_the_conditional():
    model = tiny("categorical", 3, "made", dim=3, order=[2, 0, 1])
    x = torch.tensor([[float("nan"), float("nan"), 1.0]]).expand(4000, 3)
    mask = torch.tensor([[False, False, True]]).expand(4000, 3)
    filled = model.complete(x, mask, seed=3)
    assert bool((filled[:, 2] == 1).all())
    xs = all_states(model)
    joint = model.log_prob(xs).double().exp().detach()
    cond = torch.where(xs[:, 2] == 1, joint, torch.zeros_like(joint))
    cond = (cond / cond.sum()).reshape(3, 3, 3)[:, :, 1].flatten()
    counts = torch.bincount((filled[:, 0] * 3 + filled[:, 1]).long(), minlength=9).double()
    assert chi2_pvalue(counts, cond) > 1e-3


def test_completion_needs_the_observed_entries_first_in_the_order():
    model = tiny("categorical", 3, "made", dim=3)
    with pytest.raises(ConfigurationError, match="row 1: variable 2 is observed"):
        model.complete(
            torch.zeros(2, 3), torch.tensor([[True, False, False], [False, False, True]])
        )


def test_sampling_is_seeded_and_leaves_the_global_rng_alone():
    model = tiny("categorical", 3, "transformer", dim=4)
    state = torch.get_rng_state()
    a, b = model.sample(20, seed=5), model.sample(20, seed=5)
    assert torch.equal(a, b) and not torch.equal(a, model.sample(20, seed=6))
    assert torch.equal(state, torch.get_rng_state())


def test_class_conditional_sampling_uses_the_label():
    model = tiny("categorical", 3, "made", dim=2, n_classes=2)
    with torch.no_grad():
        model.net.context_out.weight.zero_()
        model.net.context_out.weight[0:3, 0] = torch.tensor([0.0, 0.0, 20.0])  # y=0 -> x1=2
    assert bool((model.sample(50, y=0, seed=0)[:, 0] == 2).all())
    assert not bool((model.sample(50, y=1, seed=0)[:, 0] == 2).all())


# ---------------------------------------------------------------- fit, files, graph
def test_fit_raises_the_likelihood_and_keeps_the_best_validation_state():
    data = pyrobn.datasets.book_digits(levels=4, device="cpu")
    model = tiny("categorical", 4, "made", dim=64)
    before = float(model.log_prob(data.x_val).mean())
    model.fit(
        data.x_train[:200], epochs=3, batch_size=50, x_val=data.x_val[:100], seed=0, progress=False
    )
    result = model.fit_result_
    assert result.method == "svi" and result.objective_name == "log_likelihood"
    assert result.n_iter == 12 and result.wall_time > 0
    assert len(model.validation_nll_) == 3
    assert_close(-model.log_prob(data.x_val[:100]).mean(), min(model.validation_nll_), rtol=1e-5)
    assert float(model.log_prob(data.x_val).mean()) > before
    assert not model.training


def test_class_conditional_fit_validates_with_the_labels():
    x = torch.randint(0, 3, (40, 3)).float()
    y = torch.randint(0, 2, (40,))
    model = tiny(n_classes=2)
    model.fit(
        x[:30], y[:30], epochs=2, batch_size=10, x_val=x[30:], y_val=y[30:], seed=0, progress=False
    )
    assert_close(model.nll(x[30:], y[30:]).mean(), min(model.validation_nll_), rtol=1e-5)


def test_save_and_load_are_exact(tmp_path):
    model = tiny("discretized_logistic", 5, "conv", dim=6, n_classes=3, order=[5, 4, 3, 2, 1, 0])
    x = torch.randint(0, 5, (7, 6)).float()
    y = torch.randint(0, 3, (7,))
    model.save(tmp_path / "arm.pt")
    loaded = pyrobn.AutoregressiveModel.load(tmp_path / "arm.pt")
    assert torch.equal(model.log_prob(x, y), loaded.log_prob(x, y))
    assert torch.equal(model.sample(5, y=1, seed=2), loaded.sample(5, y=1, seed=2))
    (tmp_path / "bad.pt").write_bytes(b"not a model")
    with pytest.raises(CheckpointError):
        pyrobn.AutoregressiveModel.load(tmp_path / "bad.pt")


def test_graph_is_figura_8():
    graph = tiny(n_classes=2, dim=6).graph(max_nodes=4)
    assert len(graph.edges) == 6 + 4  # complete DAG on 4 nodes, plus y -> each
    assert graph.parents("x4") == ("x1", "x2", "x3", "y")
    assert not graph.d_separated("x1", "x4", given=["x2", "x3"])


# ---------------------------------------------------------------- bad input
@settings(max_examples=30, deadline=None)
@given(
    value=st.one_of(
        st.sampled_from([-1.0, 3.0, 1.5, math.nan, math.inf]),
        st.integers(3, 100).map(float),
    ),
    row=st.integers(0, 2),
    col=st.integers(0, 2),
)
def test_values_outside_the_levels_are_named(value, row, col):
    model = tiny("categorical", 3, "made")
    x = torch.zeros(3, 3)
    x[row, col] = value
    error = NonFiniteError if not math.isfinite(value) else OutOfSupportError
    with pytest.raises(error, match=rf"\({row}, {col}\)"):
        model.log_prob(x)


@settings(max_examples=20, deadline=None)
@given(shape=st.sampled_from([(3,), (2, 4), (2, 3, 1), (0, 2)]))
def test_wrong_shapes_raise(shape):
    with pytest.raises(ShapeError, match="data_dim = 3"):
        tiny().log_prob(torch.zeros(shape))


@settings(max_examples=20, deadline=None)
@given(st.one_of(st.floats(max_value=0.0), st.just(math.nan), st.just(math.inf), st.booleans()))
def test_bad_temperature_raises(temperature):
    with pytest.raises(ConfigurationError, match="temperature"):
        tiny().sample(2, temperature=temperature)


@settings(max_examples=20, deadline=None)
@given(label=st.one_of(st.integers(2, 50), st.integers(-50, -1)))
def test_unknown_class_raises(label):
    model = tiny(n_classes=2)
    with pytest.raises(OutOfSupportError, match="y"):
        model.sample(2, y=label)


def test_bad_configuration_raises():
    with pytest.raises(ConfigurationError, match="permutation"):
        tiny(order=[0, 0, 1])
    with pytest.raises(ConfigurationError, match="raster"):
        tiny(network="pixelcnn", dim=4, order=[3, 2, 1, 0])
    with pytest.raises(ConfigurationError, match="unknown network"):
        tiny(network="rnn")
    with pytest.raises(ConfigurationError, match="unknown likelihood"):
        tiny(likelihood="poisson")
    with pytest.raises(ConfigurationError, match="levels"):
        tiny(likelihood="categorical", levels=None)
    with pytest.raises(ConfigurationError, match="unconditional"):
        tiny().log_prob(torch.zeros(1, 3), y=torch.zeros(1))
    with pytest.raises(ConfigurationError, match="class-conditional"):
        tiny(n_classes=2).sample(1)
    with pytest.raises(ConfigurationError, match="steps"):
        tiny().fit(torch.zeros(4, 3), progress=False)


# ---------------------------------------------------------------- text
@pytest.fixture(scope="module")
def text_model():
    torch.manual_seed(0)
    lm = pyrobn.TextAutoregressiveModel(window=8, hidden=8, layers=2, dropout=0.0, min_count=1)
    return lm.fit(["la red bayesiana", "un grafo dirigido"], steps=3, progress=False, seed=0)


def direct_log_prob(lm, text):
    """Σ_t log p(x_t | the previous min(t, window/2..window-1) tokens), one token at a time."""
    ids = [lm.index["<s>"], *lm._ids(lm.tokenizer.tokenize(text)), lm.index["</s>"]]
    W, S = lm.window, lm.window // 2
    total = 0.0
    for t in range(1, len(ids)):
        start = 0 if t < W else S * ((t - (W - S)) // S)  # the block that predicts t
        block = ids[start : start + W] + [0] * W
        theta = lm.ar._params(torch.tensor([block[:W]], dtype=torch.float32), None)[0, t - start]
        total += float(torch.log_softmax(theta.detach(), -1)[ids[t]])
    return total


def test_text_log_prob_is_the_chain_rule_over_blocks(text_model):
    for text in ("la red", "un grafo dirigido la red bayesiana"):
        assert_close(text_model.log_prob([text])[0], direct_log_prob(text_model, text), rtol=1e-5)


def test_text_perplexity_counts_tokens_as_the_markov_chain(text_model):
    texts = ["la red", "un grafo"]
    log_p = float(text_model.log_prob(texts).sum())
    tokens = sum(len(t) + 1 for t in texts)  # each </s> counted
    assert_close(text_model.perplexity(texts), math.exp(-log_p / tokens), rtol=1e-9)


def test_text_generation_is_seeded_and_keeps_the_prompt(text_model):
    a = text_model.generate("la ", n=20, temperature=0.8, seed=1)
    assert a == text_model.generate("la ", n=20, temperature=0.8, seed=1)
    assert a.startswith("la ")


def test_text_model_files_round_trip(text_model, tmp_path):
    text_model.save(tmp_path / "lm.pt")
    loaded = pyrobn.TextAutoregressiveModel.load(tmp_path / "lm.pt")
    assert loaded.vocab == text_model.vocab
    assert torch.equal(loaded.log_prob(["la red"]), text_model.log_prob(["la red"]))


def test_text_model_bad_input():
    with pytest.raises(ConfigurationError, match="fit"):
        pyrobn.TextAutoregressiveModel().perplexity(["x"])
    with pytest.raises(ConfigurationError, match="network"):
        pyrobn.TextAutoregressiveModel(network="made")
    with pytest.raises(ConfigurationError, match="corpus"):
        pyrobn.TextAutoregressiveModel().fit(42)


def _label_spy(model, monkeypatch):
    """Record the ``y`` every call of ``model.nll`` receives."""
    calls, nll = [], model.nll

    def spy(x, y=None, **kwargs):
        calls.append(y)
        return nll(x, y, **kwargs)

    monkeypatch.setattr(model, "nll", spy)
    return calls


def test_conditional_early_stopping_on_the_book_digits_scores_with_the_labels(monkeypatch):
    # regression: validation used to hand nll a one-hot y (ShapeError) for n_classes > 0
    data = pyrobn.datasets.book_digits(device="cpu")
    xv, yv = data.x_val[:40], data.y_val[:40]
    with pyrobn.random.seeded(0):
        model = pyrobn.AutoregressiveModel(64, "categorical", 17, hidden=8, layers=1, n_classes=10)
    calls = _label_spy(model, monkeypatch)
    model.fit(
        data.x_train[:64], data.y_train[:64], epochs=2, batch_size=32, x_val=xv, y_val=yv,
        seed=0, progress=False,
    )  # fmt: skip
    monkeypatch.undo()
    assert len(calls) == len(model.validation_nll_) == 2
    for y in calls:
        assert y.dtype == torch.long and torch.equal(y.cpu(), yv)
    best = min(model.validation_nll_)
    assert_close(model.nll(xv, yv).mean(), best, rtol=1e-5)  # the best state is kept
    # the labels move the score 10x past the tolerance above: wrong labels would fail it
    assert abs(float(model.nll(xv, (yv + 1) % 10).mean()) - best) > 1e-4 * abs(best)


def test_validation_labels_are_checked_and_named():
    data = pyrobn.datasets.book_digits(device="cpu")
    model = pyrobn.AutoregressiveModel(64, "categorical", 17, hidden=8, layers=1, n_classes=10)
    x, y, xv = data.x_train[:8], data.y_train[:8], data.x_val[:4]
    one_hot = torch.nn.functional.one_hot(data.y_val[:4], 10)
    fit = {"steps": 1, "progress": False}
    with pytest.raises(ShapeError, match="y_val"):
        model.fit(x, y, x_val=xv, y_val=one_hot, **fit)
    with pytest.raises(ConfigurationError, match="y_val"):
        model.fit(x, y, x_val=xv, **fit)
    with pytest.raises(OutOfSupportError, match="y_val"):
        model.fit(x, y, x_val=xv, y_val=[0, 1, 2, 10], **fit)
