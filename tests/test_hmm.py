"""HiddenMarkovModel (notes 2.1.3.4, eq. 12): queries, learning, the Pyro pair, bad input."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pyro
import pytest
import torch
from hmmlearn import hmm
from pyro.infer import TraceEnum_ELBO

import pyrobn
from pyrobn.datasets import tagged_corpus
from pyrobn.datasets.tagging import tag_grammar
from pyrobn.errors import (
    CheckpointError,
    ConfigurationError,
    InvalidDistributionError,
    NonFiniteError,
    OutOfSupportError,
    ShapeError,
    UnknownVariableError,
    ZeroProbabilityEvidence,
)
from pyrobn.models.hmm import HiddenMarkovModel, permutation_match


def categorical_model(k=3, v=5, seed=0, **kwargs):
    return HiddenMarkovModel(k, "categorical", n_symbols=v, seed=seed, **kwargs)


def as_hmmlearn(model: HiddenMarkovModel):
    k = model.n_states
    if model.emission == "categorical":
        ref = hmm.CategoricalHMM(n_components=k, implementation="scaling")
        ref.emissionprob_ = model.emission_probs.numpy()
        ref.n_features = model.n_symbols
    else:
        ref = hmm.GaussianHMM(n_components=k, covariance_type="diag", implementation="scaling")
        ref.means_ = model.means.numpy()
        ref.covars_ = model.variances.numpy()
    ref.startprob_ = model.init_probs.numpy()
    ref.transmat_ = model.trans_probs.numpy()
    return ref


def gaussian_model(k=3, d=2, seed=0):
    model = HiddenMarkovModel(k, "gaussian", n_features=d, seed=seed)
    g = torch.Generator().manual_seed(seed)
    model.set_params(
        means=3 * torch.randn(k, d, generator=g, dtype=torch.float64),
        variances=0.5 + torch.rand(k, d, generator=g, dtype=torch.float64),
    )
    return model


# ------------------------------------------------------------------ exact queries
@pytest.mark.parametrize("emission", ["categorical", "gaussian"])
def test_ragged_batch_queries_equal_hmmlearn(emission):
    model = categorical_model(4, 7, seed=1) if emission == "categorical" else gaussian_model()
    ref = as_hmmlearn(model)
    lengths = [300, 5, 1, 77]
    seqs = [model.sample(1, n, seed=i)[1][0] for i, n in enumerate(lengths)]
    log_p = model.log_prob(seqs)
    gamma = model.posterior_marginals(seqs)
    paths, best = model.viterbi(seqs)
    for i, x in enumerate(seqs):
        xr = x.numpy().reshape(len(x), -1)
        assert log_p[i].item() == pytest.approx(ref.score(xr), rel=1e-6)
        np.testing.assert_allclose(
            gamma[i, : len(x)].numpy(), ref.predict_proba(xr), rtol=1e-6, atol=1e-12
        )
        ref_best, ref_path = ref.decode(xr)
        assert best[i].item() == pytest.approx(ref_best, rel=1e-9)
        if emission == "gaussian":  # continuous emissions: the optimum is unique
            assert paths[i, : len(x)].tolist() == ref_path.tolist()
        assert bool((paths[i, len(x) :] == -1).all())


def test_single_sequence_gives_unbatched_results():
    model = categorical_model()
    x = torch.tensor([0, 4, 2, 2, 1])
    assert model.log_prob(x).shape == ()
    assert model.posterior_marginals(x).shape == (5, 3)
    path, best = model.viterbi(x)
    assert path.shape == (5,) and best.shape == ()
    assert torch.allclose(model.log_prob(x), model.log_prob(x[None])[0])


def test_lengths_and_mask_agree_with_lists():
    model = categorical_model(3, 4, seed=2)
    x = torch.tensor([[0, 1, 2, 3, 0], [3, 3, 1, 0, 0]])
    by_lengths = model.log_prob(x, lengths=[5, 3])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=torch.bool)
    by_mask = model.log_prob(x, mask=mask)
    by_list = model.log_prob([x[0], x[1, :3]])
    assert torch.allclose(by_lengths, by_list) and torch.allclose(by_mask, by_list)


def test_missing_observations_are_summed_out():
    """log p(x with x_t missing) = log sum_v p(x with x_t = v)."""
    model = categorical_model(3, 4, seed=3)
    x = torch.tensor([1.0, 2.0, math.nan, 0.0, 3.0])
    filled = torch.stack([torch.tensor([1, 2, v, 0, 3]) for v in range(4)])
    expected = torch.logsumexp(model.log_prob(filled), 0)
    assert torch.allclose(model.log_prob(x), expected, rtol=1e-12)
    gaussian = gaussian_model(2, 2, seed=4)
    y = gaussian.sample(1, 6, seed=0)[1][0].clone()
    y[2] = math.nan  # a fully missing step drops its emission factor
    # brute force over the states: sum_z p(z) prod_{t != 2} p(y_t | z_t)
    k = 2
    total = []
    for z in itertools.product(range(k), repeat=6):
        lp = gaussian.init_probs[z[0]].log()
        lp = lp + sum(gaussian.trans_probs[z[t - 1], z[t]].log() for t in range(1, 6))
        for t in (0, 1, 3, 4, 5):
            normal = torch.distributions.Normal(
                gaussian.means[z[t]], gaussian.variances[z[t]].sqrt()
            )
            lp = lp + normal.log_prob(y[t]).sum()
        total.append(lp)
    assert torch.allclose(gaussian.log_prob(y), torch.logsumexp(torch.stack(total), 0))


def test_viterbi_equals_infer_discrete_on_the_pyro_model():
    model = gaussian_model(3, 1, seed=5)
    lengths = [12, 7, 10]
    seqs = [model.sample(1, n, seed=10 + i)[1][0] for i, n in enumerate(lengths)]
    paths, _ = model.viterbi(seqs)
    decoded = model.infer_states(seqs)
    assert torch.equal(paths, decoded)


def test_trace_enum_elbo_of_the_pyro_pair_equals_the_forward_algorithm():
    """At the guide's point mass, -ELBO = -(log p(x | tables) + log prior(tables)) (eq. 12)."""
    model = categorical_model(3, 4, seed=6, concentration=2.0)
    seqs = [torch.tensor([0.0, 1.0, math.nan, 3.0]), torch.tensor([2.0, 2.0])]
    batch = model._as_batch(seqs)
    loss = TraceEnum_ELBO(max_plate_nesting=1).loss(model.model, model.guide, batch)
    prior = sum(p.log_prob(model.params[name]).sum() for name, p in model._priors().items())
    expected = -(model.log_prob(seqs).sum() + prior)
    assert loss == pytest.approx(float(expected), rel=1e-9)


# ------------------------------------------------------------------ sampling
def test_sample_frequencies_match_the_tables():
    model = categorical_model(2, 3, seed=7)
    n, length = 4000, 6
    z, x = model.sample(n, length, seed=0)
    first = torch.bincount(z[:, 0], minlength=2).double() / n
    se = (model.init_probs * (1 - model.init_probs) / n).sqrt()
    assert bool(((first - model.init_probs).abs() <= 4 * se).all())
    prev, nxt = z[:, :-1].reshape(-1), z[:, 1:].reshape(-1)
    for i in range(2):
        rows = nxt[prev == i]
        freq = torch.bincount(rows, minlength=2).double() / len(rows)
        p = model.trans_probs[i]
        assert bool(((freq - p).abs() <= 4 * (p * (1 - p) / len(rows)).sqrt()).all())
        emitted = x[z == i]
        freq = torch.bincount(emitted, minlength=3).double() / len(emitted)
        p = model.emission_probs[i]
        assert bool(((freq - p).abs() <= 4 * (p * (1 - p) / len(emitted)).sqrt()).all())
    assert torch.equal(model.sample(5, 4, seed=1)[1], model.sample(5, 4, seed=1)[1])


# ------------------------------------------------------------------ learning
def test_supervised_fit_is_counting():
    model = categorical_model(2, 3)
    x = torch.tensor([[0, 1, 2, 2], [1, 1, 0, 0]])
    z = torch.tensor([[0, 0, 1, 1], [1, 1, 0, 0]])
    model.fit(x, states=z)
    assert torch.allclose(model.init_probs, torch.tensor([0.5, 0.5], dtype=torch.float64))
    expected_trans = torch.tensor([[2 / 3, 1 / 3], [1 / 3, 2 / 3]], dtype=torch.float64)
    assert torch.allclose(model.trans_probs, expected_trans)
    expected_emission = torch.tensor([[0.75, 0.25, 0.0], [0.0, 0.5, 0.5]], dtype=torch.float64)
    assert torch.allclose(model.emission_probs, expected_emission)
    smoothed = categorical_model(2, 3, concentration=2.0).fit(x, states=z)
    assert torch.allclose(smoothed.init_probs, torch.tensor([0.5, 0.5], dtype=torch.float64))
    assert torch.allclose(smoothed.emission_probs[1], torch.tensor([1.0, 3.0, 3.0]).double() / 7)


def _truth():
    return HiddenMarkovModel(
        3,
        "categorical",
        n_symbols=6,
        init_probs=[0.6, 0.3, 0.1],
        trans_probs=[[0.8, 0.15, 0.05], [0.1, 0.8, 0.1], [0.1, 0.2, 0.7]],
        emission_probs=[
            [0.5, 0.3, 0.1, 0.05, 0.03, 0.02],
            [0.02, 0.08, 0.4, 0.4, 0.05, 0.05],
            [0.05, 0.05, 0.05, 0.1, 0.35, 0.4],
        ],
    )


def test_baum_welch_recovers_a_known_hmm_up_to_a_permutation():
    """200 sequences x 100 steps: tables within 0.03 (trans) and 0.04 (emission)."""
    truth = _truth()
    _z, x = truth.sample(200, 100, seed=0)
    learned = categorical_model(3, 6, seed=1).fit(x, n_iter=300, tol=1e-8)
    history = torch.tensor(learned.history_)
    assert bool((history[1:] >= history[:-1] - 1e-6).all())  # EM never decreases
    perm = permutation_match(truth.emission_probs, learned.emission_probs)
    trans = learned.trans_probs[perm][:, perm]
    assert (trans - truth.trans_probs).abs().max() < 0.03
    assert (learned.emission_probs[perm] - truth.emission_probs).abs().max() < 0.04
    assert learned.log_prob(x).sum() >= truth.log_prob(x).sum()  # the MLE beats the truth


def test_gaussian_baum_welch_recovers_means_and_variances():
    truth = HiddenMarkovModel(
        2,
        "gaussian",
        n_features=1,
        trans_probs=[[0.9, 0.1], [0.2, 0.8]],
        means=[[-2.0], [2.0]],
        variances=[[0.5], [1.0]],
    )
    _, x = truth.sample(100, 100, seed=2)
    learned = HiddenMarkovModel(2, "gaussian", n_features=1, seed=3).fit(x, n_iter=200)
    perm = permutation_match(truth.means, learned.means)
    assert (learned.means[perm] - truth.means).abs().max() < 0.05
    assert (learned.variances[perm] - truth.variances).abs().max() < 0.08
    assert (learned.trans_probs[perm][:, perm] - truth.trans_probs).abs().max() < 0.03


def test_semi_supervised_em_respects_labels_and_missing_values():
    truth = _truth()
    z, x = truth.sample(100, 60, seed=4)
    x = x.double()
    x[:, 5] = math.nan  # missing observations are summed out
    labels = torch.full_like(z, -1)
    labels[:10] = z[:10]  # 10% of the sequences labelled
    learned = categorical_model(3, 6, seed=5).fit(x, states=labels, n_iter=200)
    # labels fix the state names: no permutation needed
    assert (learned.emission_probs - truth.emission_probs).abs().max() < 0.05
    path, _ = learned.viterbi(x[10:])
    reference, _ = truth.viterbi(x[10:])
    assert (path == reference).double().mean() > 0.95


def test_svi_with_trace_enum_elbo_and_autodelta_matches_baum_welch():
    truth = _truth()
    _, x = truth.sample(8, 6, seed=6)
    em = categorical_model(3, 6, seed=7, concentration=1.5).fit(x, method="em", n_iter=500)
    svi = categorical_model(3, 6, seed=7, concentration=1.5)
    svi.set_params(**em.params)  # at the MAP found by EM, the SVI gradient is ~0
    svi.fit(x, method="svi", steps=5, lr=0.01, seed=0)
    assert (svi.trans_probs - em.trans_probs).abs().max() < 0.02
    assert svi.history_[0] == pytest.approx(-float(em._log_joint(em._as_batch(x))), rel=1e-9)
    start = categorical_model(3, 6, seed=7, concentration=1.5)
    far = categorical_model(3, 6, seed=7, concentration=1.5)
    far.fit(x, method="svi", steps=20, lr=0.15, seed=0)  # from elsewhere it climbs
    joint = [float(m._log_joint(m._as_batch(x))) for m in (start, far, em)]
    assert joint[1] - joint[0] > 0.8 * (joint[2] - joint[0]) > 0  # 92% of EM's gain


def test_tagging_corpus_supervised_viterbi_accuracy():
    corpus = tagged_corpus(600, seed=1)
    tags, vocabulary, tables = tag_grammar()
    assert corpus.tagset == tags and corpus.vocabulary == vocabulary
    for name, table in tables.items():
        assert torch.allclose(table.sum(-1), torch.ones(()).double()), name
    model = HiddenMarkovModel(len(tags), "categorical", n_symbols=len(vocabulary))
    model.fit(corpus.train_x, states=corpus.train_y, lengths=corpus.train_lengths)
    path, _ = model.viterbi(corpus.test_x, lengths=corpus.test_lengths)
    real = corpus.test_y >= 0
    accuracy = (path[real] == corpus.test_y[real]).double().mean()
    oracle = HiddenMarkovModel(len(tags), "categorical", n_symbols=len(vocabulary))
    oracle.set_params(
        init_probs=tables["init"], trans_probs=tables["trans"], emission_probs=tables["emission"]
    )
    best, _ = oracle.viterbi(corpus.test_x, lengths=corpus.test_lengths)
    oracle_accuracy = (best[real] == corpus.test_y[real]).double().mean()
    assert accuracy > 0.95 and accuracy >= oracle_accuracy - 0.02


def test_tagged_corpus_is_seeded_and_split():
    a, b = tagged_corpus(50, seed=3), tagged_corpus(50, seed=3)
    assert a.train_words == b.train_words and torch.equal(a.test_x, b.test_x)
    assert len(a.train_words) == 40 and len(a.test_words) == 10
    assert all(s[-1] == "." and t[-1] == "PUNCT" for s, t in zip(a.train_words, a.train_tags))
    assert a.decode_tags(a.train_y, a.train_lengths) == a.train_tags
    x, lengths = a.encode(a.test_words)
    assert torch.equal(x, a.test_x) and torch.equal(lengths, a.test_lengths)
    with pytest.raises(UnknownVariableError, match="'ordenador'"):
        a.encode([["el", "ordenador", "."]])
    with pytest.raises(ConfigurationError):
        tagged_corpus(10, held_out=1.5)


# ------------------------------------------------------------------ persistence and device
def test_save_load_round_trip(tmp_path):
    model = categorical_model(3, 5, seed=8)
    model.fit(model.sample(20, 10, seed=0)[1], n_iter=5)
    path = tmp_path / "hmm.pt"
    model.save(path)
    loaded = HiddenMarkovModel.load(path)
    for name, value in model.params.items():
        assert torch.equal(loaded.params[name], value)
    with pytest.raises(CheckpointError):
        pyrobn.HiddenMarkovModel.load(tmp_path / "missing.pt")


def test_queries_run_on_the_model_device(device):
    model = categorical_model(3, 5).to(device)
    _, x = model.sample(4, 50, seed=0)
    assert x.device.type == device.type
    assert model.log_prob(x).device.type == device.type
    assert model.posterior_marginals(x).device.type == device.type
    assert model.viterbi(x)[0].device.type == device.type


# ------------------------------------------------------------------ bad input
def test_bad_parameters_raise_named_errors():
    with pytest.raises(InvalidDistributionError, match=r"trans_probs: row \(1,\) sums to 0.9"):
        categorical_model(2, 2, trans_probs=[[0.5, 0.5], [0.5, 0.4]])
    with pytest.raises(NonFiniteError, match="init_probs"):
        categorical_model(2, 2, init_probs=[math.nan, 1.0])
    with pytest.raises(ShapeError, match=r"emission_probs must have shape \(2, 3\)"):
        categorical_model(2, 3, emission_probs=[[1.0, 0.0], [0.0, 1.0]])
    with pytest.raises(ConfigurationError, match="variances must be positive"):
        HiddenMarkovModel(2, "gaussian", variances=[[1.0], [0.0]])
    with pytest.raises(ConfigurationError, match="n_symbols"):
        HiddenMarkovModel(2, "categorical")
    with pytest.raises(ConfigurationError, match="emission"):
        HiddenMarkovModel(2, "poisson")
    with pytest.raises(ConfigurationError, match="means does not apply"):
        categorical_model().set_params(means=[[0.0]] * 3)


def test_bad_observations_raise_named_errors():
    model = categorical_model(3, 4)
    with pytest.raises(OutOfSupportError, match=r"index \(0, 2\) holds 7"):
        model.log_prob(torch.tensor([[0, 1, 7]]))
    with pytest.raises(OutOfSupportError, match="must hold integers"):
        model.log_prob(torch.tensor([0.0, 1.5]))
    with pytest.raises(NonFiniteError):
        model.log_prob(torch.tensor([0.0, math.inf]))
    with pytest.raises(ShapeError, match="observations must have shape"):
        model.log_prob(torch.zeros(2, 3, 4, dtype=torch.long))
    with pytest.raises(ShapeError, match=r"lengths must have shape \(2,\)"):
        model.log_prob(torch.zeros(2, 3, dtype=torch.long), lengths=[3])
    with pytest.raises(OutOfSupportError, match="lengths"):
        model.log_prob(torch.zeros(2, 3, dtype=torch.long), lengths=[3, 4])
    with pytest.raises(OutOfSupportError, match="lengths"):
        model.log_prob(torch.zeros(2, 3, dtype=torch.long), lengths=[0, 2])
    with pytest.raises(ShapeError, match="not a prefix"):
        model.log_prob(torch.zeros(1, 3, dtype=torch.long), mask=[[True, False, True]])
    with pytest.raises(OutOfSupportError, match=r"states must lie in \{0, ..., 2\} \(or -1\)"):
        model.fit(torch.zeros(1, 3, dtype=torch.long), states=torch.tensor([[0, 3, -1]]))
    with pytest.raises(ShapeError, match="states must have shape"):
        model.fit(torch.zeros(1, 3, dtype=torch.long), states=torch.tensor([[0, 1]]))
    gaussian = HiddenMarkovModel(2, "gaussian", n_features=2)
    with pytest.raises(ShapeError, match=r"observations must have shape .* got \(4, 5, 3\)"):
        gaussian.log_prob(torch.zeros(4, 5, 3))
    with pytest.raises(NonFiniteError, match="observations"):
        gaussian.log_prob(torch.tensor([[0.0, math.inf]]))
    with pytest.raises(ConfigurationError, match="method"):
        model.fit(torch.zeros(1, 3, dtype=torch.long), method="gibbs")


def test_impossible_sequences_raise_zero_probability_evidence():
    model = HiddenMarkovModel(
        2,
        "categorical",
        n_symbols=2,
        init_probs=[1.0, 0.0],
        trans_probs=[[1.0, 0.0], [0.0, 1.0]],
        emission_probs=[[1.0, 0.0], [0.0, 1.0]],
    )
    x = torch.tensor([[0, 0], [0, 1]])
    assert model.log_prob(x)[1] == -math.inf
    with pytest.raises(ZeroProbabilityEvidence, match="sequence 1"):
        model.viterbi(x)
    with pytest.raises(ZeroProbabilityEvidence, match="sequence 1"):
        model.posterior_marginals(x)


def test_models_have_their_own_pyro_names():
    a, b = categorical_model(), categorical_model()
    assert a._pyro_name != b._pyro_name
    pyro.clear_param_store()
