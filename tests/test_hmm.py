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
from tests.common import assert_close


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
    assert_close(model.log_prob(x), model.log_prob(x[None])[0])


def test_lengths_and_mask_agree_with_lists():
    model = categorical_model(3, 4, seed=2)
    x = torch.tensor([[0, 1, 2, 3, 0], [3, 3, 1, 0, 0]])
    by_lengths = model.log_prob(x, lengths=[5, 3])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=torch.bool)
    by_mask = model.log_prob(x, mask=mask)
    by_list = model.log_prob([x[0], x[1, :3]])
    assert_close(by_lengths, by_list)
    assert_close(by_mask, by_list)


def test_missing_observations_are_summed_out():
    """log p(x with x_t missing) = log sum_v p(x with x_t = v)."""
    model = categorical_model(3, 4, seed=3)
    x = torch.tensor([1.0, 2.0, math.nan, 0.0, 3.0])
    filled = torch.stack([torch.tensor([1, 2, v, 0, 3]) for v in range(4)])
    expected = torch.logsumexp(model.log_prob(filled), 0)
    assert_close(model.log_prob(x), expected, rtol=1e-12)
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
    assert_close(gaussian.log_prob(y), torch.logsumexp(torch.stack(total), 0))


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
    assert_close(model.init_probs, torch.tensor([0.5, 0.5], dtype=torch.float64))
    expected_trans = torch.tensor([[2 / 3, 1 / 3], [1 / 3, 2 / 3]], dtype=torch.float64)
    assert_close(model.trans_probs, expected_trans)
    expected_emission = torch.tensor([[0.75, 0.25, 0.0], [0.0, 0.5, 0.5]], dtype=torch.float64)
    assert_close(model.emission_probs, expected_emission)
    smoothed = categorical_model(2, 3, concentration=2.0).fit(x, states=z)
    assert_close(smoothed.init_probs, torch.tensor([0.5, 0.5], dtype=torch.float64))
    assert_close(smoothed.emission_probs[1], torch.tensor([1.0, 3.0, 3.0]).double() / 7)


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
    learned = categorical_model(3, 6, seed=1).fit(x, max_iter=300, tol=1e-8)
    history = torch.tensor(learned.fit_result_.objective)
    assert learned.fit_result_.method == "em" and learned.fit_result_.converged
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
    learned = HiddenMarkovModel(2, "gaussian", n_features=1, seed=3).fit(x, max_iter=200)
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
    learned = categorical_model(3, 6, seed=5).fit(x, states=labels, max_iter=200)
    # labels fix the state names: no permutation needed
    assert (learned.emission_probs - truth.emission_probs).abs().max() < 0.05
    path, _ = learned.viterbi(x[10:])
    reference, _ = truth.viterbi(x[10:])
    assert (path == reference).double().mean() > 0.95


def test_svi_with_trace_enum_elbo_and_autodelta_matches_baum_welch():
    truth = _truth()
    _, x = truth.sample(8, 6, seed=6)
    em = categorical_model(3, 6, seed=7, concentration=1.5).fit(x, method="em", max_iter=500)
    svi = categorical_model(3, 6, seed=7, concentration=1.5)
    svi.set_params(**em.params)  # at the MAP found by EM, the SVI gradient is ~0
    with pytest.warns(pyrobn.errors.ConvergenceWarning):  # 5 steps: stated, not hidden
        svi.fit(x, method="svi", steps=5, lr=0.01, seed=0)
    assert (svi.trans_probs - em.trans_probs).abs().max() < 0.02
    first = svi.fit_result_.objective[0]  # the ELBO of the point mass: the log joint
    assert first == pytest.approx(float(em._log_joint(em._as_batch(x))), rel=1e-9)
    start = categorical_model(3, 6, seed=7, concentration=1.5)
    far = categorical_model(3, 6, seed=7, concentration=1.5)
    with pytest.warns(pyrobn.errors.ConvergenceWarning):
        far.fit(x, method="svi", steps=20, lr=0.15, seed=0)  # from elsewhere it climbs
    joint = [float(m._log_joint(m._as_batch(x))) for m in (start, far, em)]
    assert joint[1] - joint[0] > 0.8 * (joint[2] - joint[0]) > 0  # 92% of EM's gain


def test_tagging_corpus_supervised_viterbi_accuracy():
    corpus = tagged_corpus(600, seed=1)
    tags, vocabulary, tables = tag_grammar()
    assert corpus.tagset == tags and corpus.vocabulary == vocabulary
    for name, table in tables.items():
        assert_close(table.sum(-1), torch.ones_like(table.sum(-1)), msg=name)
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
    model.fit(model.sample(20, 10, seed=0)[1], max_iter=5)
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


# ------------------------------------------------------------------ the data layout rule
def _scalar_truth():
    return HiddenMarkovModel(
        2,
        "gaussian",
        n_features=1,
        trans_probs=[[0.9, 0.1], [0.2, 0.8]],
        means=[[-2.0], [2.0]],
        variances=[[0.5], [1.0]],
    )


def test_one_sequence_of_scalars_is_one_sequence_in_every_method():
    """(T, 1), the layout sample() returns, is ONE sequence (hmmlearn's reading), as is
    (T,); (N, T, 1) is a batch. Before the fix, (T, 1) was read as T sequences of length 1."""
    model = _scalar_truth()
    _, x = model.sample(3, 40, seed=0)
    one = x[0]  # (40, 1)
    assert one.shape == (40, 1)
    ref = as_hmmlearn(model)
    for layout in (one, one[:, 0], one.tolist(), one[:, 0].tolist()):
        assert model.log_prob(layout).shape == ()
        assert model.log_prob(layout).item() == pytest.approx(ref.score(one.numpy()), rel=1e-9)
        assert model.posterior_marginals(layout).shape == (40, 2)
        assert_close(model.predict_proba(layout), ref.predict_proba(one.numpy()), atol=1e-10)
        path, best = model.viterbi(layout)
        assert path.shape == (40,) and best.shape == ()
        assert model.predict(layout).tolist() == ref.decode(one.numpy())[1].tolist()
    assert model.log_prob(x).shape == (3,)
    assert_close(model.log_prob(x)[0], model.log_prob(one))
    assert model.infer_states(one).shape == (40,)
    # the Pyro pair reads the same layout: -ELBO at the point mass = -(log p(x) + log prior)
    loss = TraceEnum_ELBO(max_plate_nesting=1).loss(model.model, model.guide, one)
    prior = sum(p.log_prob(model.params[n]).sum() for n, p in model._priors().items())
    assert loss == pytest.approx(-float(model.log_prob(one) + prior), rel=1e-9)


def test_fit_learns_from_one_sequence_of_scalars():
    """Baum-Welch on one (T, 1) sequence equals Baum-Welch on the same sequence as a batch
    of one, and recovers the means (before the fix it learnt nothing)."""
    truth = _scalar_truth()
    _, x = truth.sample(1, 2000, seed=1)
    alone = HiddenMarkovModel(2, "gaussian", n_features=1, seed=3).fit(x[0], max_iter=200)
    batch = HiddenMarkovModel(2, "gaussian", n_features=1, seed=3).fit(x, max_iter=200)
    for name, value in batch.params.items():
        assert_close(alone.params[name], value, rtol=1e-12, atol=0)
    perm = permutation_match(truth.means, alone.means)
    assert (alone.means[perm] - truth.means).abs().max() < 0.15  # measured 0.02-0.07
    assert alone.fit_result_.final_objective > alone.fit_result_.objective[0] + 100


def test_two_dimensional_tensors_are_never_a_batch_for_gaussian_emissions():
    scalar = _scalar_truth()
    with pytest.raises(ShapeError, match=r"\(N, T, 1\)"):
        scalar.log_prob(torch.zeros(5, 7))  # (N, T) scalars: ambiguous, refused
    assert scalar.log_prob(torch.zeros(5, 7, 1)).shape == (5,)
    assert scalar.log_prob([torch.zeros(7), torch.zeros(3, 1)]).shape == (2,)
    pair = gaussian_model(3, 2)
    assert pair.log_prob(torch.zeros(7, 2)).shape == ()
    assert pair.log_prob(torch.zeros(4, 7, 2)).shape == (4,)
    assert pair.log_prob([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]]).shape == ()  # one (3, 2) sequence
    for bad in (torch.zeros(7), torch.zeros(7, 3), torch.zeros(2, 7, 1)):
        with pytest.raises(ShapeError, match="observations"):
            pair.log_prob(bad)
    categorical = categorical_model()
    assert categorical.log_prob(torch.zeros(6, dtype=torch.long)).shape == ()
    assert categorical.log_prob(torch.zeros(2, 6, dtype=torch.long)).shape == (2,)


# ------------------------------------------------------------------ the estimator contract
def test_predict_proba_and_predict_are_the_marginals_and_the_viterbi_path():
    model = categorical_model(3, 5, seed=9)
    _, x = model.sample(4, 30, seed=2)
    assert torch.equal(model.predict_proba(x), model.posterior_marginals(x))
    assert torch.equal(model.predict(x), model.viterbi(x)[0])
    assert torch.equal(model.predict(x[0]), model.viterbi(x[0])[0])


def test_em_goes_through_run_em_with_restarts_and_a_final_objective():
    truth = _truth()
    _, x = truth.sample(30, 40, seed=3)
    model = categorical_model(3, 6, seed=2)
    before = torch.get_rng_state()
    assert model.fit(x, max_iter=50, restarts=3, seed=5) is model
    assert torch.equal(torch.get_rng_state(), before)  # seeded: the caller's stream is kept
    result = model.fit_result_
    assert result.method == "em" and len(result.restarts) == 3
    finals = [trace[-1] for trace in result.restarts]
    assert result.best_restart == int(torch.tensor(finals).argmax())
    # the last entry is the objective of the tables the model keeps (one more forward pass)
    assert result.final_objective == pytest.approx(
        float(model._log_joint(model._as_batch(x))), rel=1e-12
    )
    again = categorical_model(3, 6, seed=2).fit(x, max_iter=50, restarts=3, seed=5)
    assert all(torch.equal(again.params[n], v) for n, v in model.params.items())
    capped = categorical_model(3, 6, seed=2).fit(x, max_iter=2)
    assert not capped.fit_result_.converged and capped.fit_result_.n_iter == 3


def test_counts_fit_records_its_objective():
    model = categorical_model(2, 3, concentration=2.0)
    x = torch.tensor([[0, 1, 2, 2], [1, 1, 0, 0]])
    z = torch.tensor([[0, 0, 1, 1], [1, 1, 0, 0]])
    model.fit(x, states=z)
    assert model.fit_result_.method == "counts"
    assert model.fit_result_.objective_name == "log_posterior"
    expected = model._log_joint(model._as_batch(x, states=z))
    assert model.fit_result_.final_objective == pytest.approx(float(expected), rel=1e-12)


def test_deprecated_names_warn_and_still_work():
    truth = _truth()
    _, x = truth.sample(10, 20, seed=4)
    new = categorical_model(3, 6, seed=1).fit(x, max_iter=7)
    with pytest.warns(DeprecationWarning, match="max_iter"):
        old = categorical_model(3, 6, seed=1).fit(x, n_iter=7)
    assert all(torch.equal(old.params[n], v) for n, v in new.params.items())
    with pytest.warns(DeprecationWarning, match="fit_result_"):
        history = old.history_
    assert history == old.fit_result_.objective


def test_svi_guide_lives_under_the_model_name_and_is_released(recwarn):
    import gc

    from pyrobn.infer.params import owned_params

    truth = _truth()
    _, x = truth.sample(4, 6, seed=6)
    pyro.param("users_own", torch.ones(2))
    a, b = categorical_model(3, 6, seed=1), categorical_model(3, 6, seed=2)
    with pytest.warns(pyrobn.errors.ConvergenceWarning, match="method='svi'"):
        a.fit(x, method="svi", steps=3, seed=0)
    assert a.fit_result_.method == "svi" and a.fit_result_.converged is False
    a_names = owned_params(a._pyro_name)
    assert a_names and all(n.startswith(f"{a._pyro_name}.map_guide") for n in a_names)
    a_values = {n: pyro.param(n).detach().clone() for n in a_names}
    with pytest.warns(pyrobn.errors.ConvergenceWarning):
        b.fit(x, method="svi", steps=3, seed=0)
    assert all(torch.equal(pyro.param(n).detach(), v) for n, v in a_values.items())
    del a
    gc.collect()
    assert not any(n in pyro.get_param_store().keys() for n in a_names)
    assert "users_own" in pyro.get_param_store().keys() and owned_params(b._pyro_name)


# ------------------------------------------------------------------ files and sizes
def test_a_loaded_file_is_validated(tmp_path):
    model = categorical_model(3, 4, seed=1)
    model.save(tmp_path / "ok.pt")
    state = torch.load(tmp_path / "ok.pt", weights_only=True)
    state["state_dict"]["trans_probs"] = torch.full((3, 3), 5.0, dtype=torch.float64)
    torch.save(state, tmp_path / "rows.pt")
    with pytest.raises(CheckpointError, match="sums to 15"):
        HiddenMarkovModel.load(tmp_path / "rows.pt")
    gaussian = gaussian_model(2, 2)
    gaussian.save(tmp_path / "g.pt")
    for name, value in (("variances", -1.0), ("means", math.nan)):
        state = torch.load(tmp_path / "g.pt", weights_only=True)
        state["state_dict"][name] = torch.full((2, 2), value, dtype=torch.float64)
        torch.save(state, tmp_path / "bad.pt")
        with pytest.raises(CheckpointError, match=name):
            HiddenMarkovModel.load(tmp_path / "bad.pt")


def test_size_guards_name_the_size(monkeypatch):
    with pytest.raises(pyrobn.errors.SizeLimitError, match="100000 states"):
        HiddenMarkovModel(10**5, n_symbols=2)
    model = categorical_model(3, 4)
    with pytest.raises(pyrobn.errors.SizeLimitError, match="sample of 1000000000000"):
        model.sample(10**12, 1)
    monkeypatch.setenv("PYROBN_MEMORY_BUDGET", "1M")
    x = torch.zeros(100, 1000, dtype=torch.long)
    for query in (model.log_prob, model.posterior_marginals, model.viterbi, model.fit):
        with pytest.raises(pyrobn.errors.SizeLimitError, match="100 x 1000 steps"):
            query(x)


# ------------------------------------------------------------------ the graph (Figura 5)
def test_graph_is_figura_5_and_its_independences_hold_numerically():
    model = categorical_model(
        2,
        2,
        init_probs=[0.3, 0.7],
        trans_probs=[[0.9, 0.1], [0.2, 0.8]],
        emission_probs=[[0.85, 0.15], [0.25, 0.75]],
    )
    g = model.graph(3)
    assert {n.name: (n.role, n.discrete) for n in g.nodes} == {
        **{f"z_{t}": ("latent", True) for t in (1, 2, 3)},
        **{f"x_{t}": ("observed", True) for t in (1, 2, 3)},
    }
    assert sorted(g.edges) == sorted(
        [("z_1", "z_2"), ("z_2", "z_3"), ("z_1", "x_1"), ("z_2", "x_2"), ("z_3", "x_3")]
    )
    assert set(g.plates["data"][0]) == set(g.names)
    assert not gaussian_model(2, 1).graph().node("x_1").discrete
    # the joint table of eq. 12 over (z_1, z_2, z_3, x_1, x_2, x_3), by brute force
    names = ["z_1", "z_2", "z_3", "x_1", "x_2", "x_3"]
    joint = torch.zeros([2] * 6, dtype=torch.float64)
    pi, a, b = model.init_probs, model.trans_probs, model.emission_probs
    for z1, z2, z3, x1, x2, x3 in itertools.product(range(2), repeat=6):
        joint[z1, z2, z3, x1, x2, x3] = (
            pi[z1] * a[z1, z2] * a[z2, z3] * b[z1, x1] * b[z2, x2] * b[z3, x3]
        )
    checked = 0
    for i, j in itertools.combinations(range(6), 2):
        others = [k for k in range(6) if k not in (i, j)]
        for r in range(len(others) + 1):
            for given in itertools.combinations(others, r):
                gap = _dependence(joint, i, j, list(given))
                if g.d_separated(names[i], names[j], [names[k] for k in given]):
                    assert gap < 1e-12, (names[i], names[j], given)
                    checked += 1
                else:  # not implied: fails for these tables (smallest gap 0.032)
                    assert gap > 1e-2, (names[i], names[j], given)
    assert checked > 20
    assert g.d_separated("x_1", "x_3", ["z_2"]) and not g.d_separated("x_1", "x_3", ["x_2"])


def _dependence(joint: torch.Tensor, a: int, b: int, given: list[int]) -> float:
    """max |p(a, b | c) - p(a | c) p(b | c)| over the values (c: the given variables)."""
    keep = [a, b, *given]
    drop = [k for k in range(joint.dim()) if k not in keep]
    marginal = joint.sum(drop) if drop else joint
    marginal = marginal.permute(*[sorted(keep).index(k) for k in keep])
    conditional = marginal / marginal.sum((0, 1), keepdim=True)
    pa, pb = conditional.sum(1, keepdim=True), conditional.sum(0, keepdim=True)
    return float((conditional - pa * pb).abs().max())


@pytest.mark.parametrize(
    ("emission", "expected"), [("categorical", 2 + 6 + 3 * 6), ("gaussian", 2 + 6 + 12)]
)
def test_n_parameters_counts_the_free_entries(emission, expected):
    model = categorical_model(3, 7) if emission == "categorical" else gaussian_model(3, 2)
    free = sum(
        t.numel() - (t.numel() // t.shape[-1] if name.endswith("probs") else 0)
        for name, t in model.params.items()
    )
    assert model.n_parameters == free == expected
