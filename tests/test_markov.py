"""MarkovChain of order k (notes 2.1.3.3, eq. 11): counts and probabilities against brute
force, normalisation, the sampler against exact probabilities, text corpus, errors."""

from __future__ import annotations

import itertools
import math
from collections import Counter

import pyro
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import pyrobn
from pyrobn.datasets import text_corpus
from pyrobn.datasets.text import paragraphs
from pyrobn.errors import ConfigurationError, OutOfSupportError
from pyrobn.models.markov import BOS, EOS, Tokenizer, tokenize
from pyrobn.random import seeded
from tests.common import assert_close


def brute_force_log_prob(train: list[str], test: list[str], k: int, alpha: float) -> list[float]:
    """log p(x) from explicit Python counters over padded (k+1)-grams."""
    pad = lambda s: [BOS] * k + list(s) + [EOS]  # noqa: E731
    grams: Counter = Counter()
    contexts: Counter = Counter()
    for s in train:
        p = pad(s)
        for t in range(k, len(p)):
            grams[tuple(p[t - k : t + 1])] += 1
            contexts[tuple(p[t - k : t])] += 1
    n_outcomes = len(set("".join(train))) + 1  # tokens and </s>
    out = []
    for s in test:
        p = pad(s)
        total = 0.0
        for t in range(k, len(p)):
            h, w = tuple(p[t - k : t]), p[t]
            total += math.log((grams[(*h, w)] + alpha) / (contexts[h] + alpha * n_outcomes))
        out.append(total)
    return out


@settings(max_examples=40, deadline=None)
@given(
    train=st.lists(st.text(alphabet="abc", min_size=0, max_size=12), min_size=1, max_size=6),
    k=st.integers(0, 3),
    alpha=st.floats(0.05, 2.0),
)
def test_log_prob_equals_brute_force_counts(train, k, alpha):
    if not "".join(train):
        train = [*train, "a"]
    test = [*train[:2], "", "cab", "a" * 7]
    test = [s for s in test if set(s) <= set("".join(train))]
    mc = pyrobn.MarkovChain(order=k, concentration=alpha, lower=False).fit([list(s) for s in train])
    expected = brute_force_log_prob(train, test, k, alpha)
    got = mc.log_prob([list(s) for s in test]).tolist()
    assert got == pytest.approx(expected, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("k", [0, 1, 2])
def test_rows_are_distributions(k, device):
    mc = (
        pyrobn.MarkovChain(order=k, concentration=0.5)
        .to(device)
        .fit(["abracadabra", "cabana", "ab"])
    )
    table = mc.transition_matrix()
    assert table.device.type == device.type
    assert table.shape == (mc.vocab_size**k, mc.vocab_size)
    assert_close(table.sum(-1), torch.ones_like(table[:, 0]), rtol=0, atol=1e-12)
    assert bool((table[:, mc.index[BOS]] == 0).all())


def test_maximum_likelihood_limit_is_relative_frequency():
    """alpha -> 0: p(w | h) = N(h, w) / N(h), the MLE of the transition matrix (eq. 11)."""
    mc = pyrobn.MarkovChain(order=1, concentration=1e-12).fit(["aab", "ab"])
    probs = mc.next_token_log_probs(torch.tensor([[mc.index["a"]]])).exp()[0]
    # after "a": a once, b twice
    assert float(probs[mc.index["a"]]) == pytest.approx(1 / 3)
    assert float(probs[mc.index["b"]]) == pytest.approx(2 / 3)


def test_sampler_matches_exact_probabilities():
    """First two tokens of 20,000 samples vs p(x1) p(x2 | x1), within 4 standard errors."""
    mc = pyrobn.MarkovChain(order=1, concentration=0.7).fit(["abca", "bbc", "cab", "a"])
    n = 20_000
    samples = mc.sample(n, max_length=2, seed=0)
    V = mc.vocab
    first = mc.next_token_log_probs(torch.tensor([[mc.index[BOS]]])).exp()[0]
    counts = Counter(tuple(s[:2]) if len(s) >= 2 else (*s, EOS) for s in samples)
    for a in ("a", "b", "c"):
        second = mc.next_token_log_probs(torch.tensor([[mc.index[a]]])).exp()[0]
        for b in ("a", "b", "c", EOS):
            p = float(first[V.index(a)] * second[V.index(b)])
            se = math.sqrt(p * (1 - p) / n)
            assert abs(counts[(a, b)] / n - p) < 4 * se, (a, b)
    p_empty = float(first[mc.index[EOS]])
    assert abs(sum(len(s) == 0 for s in samples) / n - p_empty) < 4 * math.sqrt(
        p_empty * (1 - p_empty) / n
    )


def test_temperature_reshapes_the_distribution():
    mc = pyrobn.MarkovChain(order=0, concentration=0.5).fit(["aaaaab"])
    n, T = 20_000, 0.5
    samples = mc.sample(n, max_length=1, temperature=T, seed=1)
    log_p = mc.next_token_log_probs(torch.zeros(1, 0, dtype=torch.long))[0]
    target = torch.softmax(log_p / T, -1)  # p^(1/T) renormalised
    p = float(target[mc.index["a"]])
    freq = sum(s == ["a"] for s in samples) / n
    assert abs(freq - p) < 4 * math.sqrt(p * (1 - p) / n)
    greedy = mc.generate("", n=5, temperature=0)
    assert greedy == "aaaaa"  # the most probable token every time


def test_generate_continues_the_prompt_and_is_seeded():
    mc = pyrobn.MarkovChain(order=2, concentration=0.01, level="word").fit(
        ["the cat sat on the mat .", "the dog sat on the log ."]
    )
    text = mc.generate("the cat", n=10, temperature=0.5, seed=3)
    assert text.startswith("the cat sat on the")
    assert text == mc.generate("the cat", n=10, temperature=0.5, seed=3)


def test_order_lowers_held_out_perplexity_on_the_notes():
    """Character n-grams on the shipped course notes: more context, better prediction."""
    train, held_out = text_corpus("apuntes")
    perplexity = [
        pyrobn.MarkovChain(order=k, concentration=0.05, unknown="unk", min_count=2)
        .fit(train)
        .perplexity(held_out)
        for k in (0, 1, 2)
    ]
    # measured: 24.1, 11.1, 6.0
    assert perplexity[0] > perplexity[1] + 5 > perplexity[2] + 8
    assert perplexity[2] > 1


def test_add_alpha_is_the_posterior_mean_and_the_guide_is_exact():
    """Dirichlet(alpha) prior on each row: the posterior is Dirichlet(alpha + counts), its
    mean is the add-alpha estimate, and the ELBO with that guide is the log evidence."""
    corpus = ["abcab", "bca", "aab"]
    mc = pyrobn.MarkovChain(order=1, concentration=0.5).fit(corpus)
    conc = mc.posterior_concentration()
    contexts = mc.context_keys.unsqueeze(1)  # order 1: the context hash is the token id
    add_alpha = mc.next_token_log_probs(contexts).exp()[:, 1:]  # drop the <s> column
    assert_close(conc / conc.sum(-1, keepdim=True), add_alpha, rtol=1e-12, atol=0)
    rows, outcomes = mc.ngram_data(corpus)
    elbos = []
    for seed in range(3):
        with seeded(seed):  # the process's random streams are given back
            elbos.append(-pyro.infer.Trace_ELBO().loss(mc.model, mc.guide, rows, outcomes))
    assert elbos == pytest.approx([mc.log_evidence()] * 3, rel=1e-9)
    # brute force: the chain rule of the Polya urn, token by token in corpus order
    counts: Counter = Counter()
    log_evidence = 0.0
    for h, w in zip(rows.tolist(), outcomes.tolist()):
        n_h = sum(c for (hh, _), c in counts.items() if hh == h)
        log_evidence += math.log((counts[(h, w)] + 0.5) / (n_h + 0.5 * (mc.vocab_size - 1)))
        counts[(h, w)] += 1
    assert mc.log_evidence() == pytest.approx(log_evidence, rel=1e-12)


def test_unknown_symbols():
    mc = pyrobn.MarkovChain(order=1).fit(["abc"])
    with pytest.raises(OutOfSupportError, match=r"symbol 'z' at position 2 of sequence 1"):
        mc.log_prob(["ab", "abz"])
    with pytest.raises(OutOfSupportError, match="'q' at position 0 of the prompt"):
        mc.generate("q")
    unk = pyrobn.MarkovChain(order=1, unknown="unk", min_count=2).fit(["abca", "ab"])
    assert "<unk>" in unk.vocab and "c" not in unk.vocab
    assert unk.log_prob(["az"]).tolist() == unk.log_prob(["ac"]).tolist()
    with pytest.raises(OutOfSupportError, match="reserved symbol '</s>'"):
        pyrobn.MarkovChain().fit([["a", EOS]])


def test_bad_configuration():
    with pytest.raises(ConfigurationError, match="order"):
        pyrobn.MarkovChain(order=-1)
    with pytest.raises(ConfigurationError, match="concentration"):
        pyrobn.MarkovChain(concentration=0.0)
    with pytest.raises(ConfigurationError, match="unknown"):
        pyrobn.MarkovChain(unknown="skip")
    with pytest.raises(ConfigurationError, match="not fitted"):
        pyrobn.MarkovChain().perplexity("abc")
    mc = pyrobn.MarkovChain().fit("abc")
    with pytest.raises(ConfigurationError, match="temperature"):
        mc.generate("a", temperature=-1.0)
    with pytest.raises(ConfigurationError, match="list of str"):
        mc.log_prob([1, 2])
    with pytest.raises(ConfigurationError, match="too many"):
        pyrobn.MarkovChain(order=6, level="word").fit(" ".join(f"w{i}" for i in range(2000)))


def test_save_load_round_trip(tmp_path, device):
    train, held_out = text_corpus("apuntes", held_out=0.5)
    mc = pyrobn.MarkovChain(order=2, concentration=0.1, unknown="unk").to(device).fit(train[:20])
    mc.save(tmp_path / "mc.pt")
    back = pyrobn.MarkovChain.load(tmp_path / "mc.pt", map_location=device)
    assert back.vocab == mc.vocab
    assert torch.equal(back.log_prob(held_out[:5]), mc.log_prob(held_out[:5]))
    assert back.generate("la ", 30, seed=0) == mc.generate("la ", 30, seed=0)


def test_tokenizer():
    assert tokenize("Hola,  mundo.", "word") == ["hola", ",", "mundo", "."]
    assert tokenize("A  b\nc") == list("a b c")
    words = Tokenizer("word", lower=False)
    assert words.detokenize(words.tokenize("Así es, ¿no? (sí).")) == "Así es, ¿no? (sí)."
    with pytest.raises(ConfigurationError, match="level"):
        Tokenizer("byte")


def test_text_corpus_splits():
    for source in ("apuntes", "python-docs"):
        train, held_out = text_corpus(source, held_out=0.2, seed=1)
        assert len(held_out) == round(0.2 * (len(train) + len(held_out)))
        assert sorted(train + held_out) == sorted(paragraphs(source))
        assert text_corpus(source, held_out=0.2, seed=1) == (train, held_out)
        assert text_corpus(source, held_out=0.2, seed=2) != (train, held_out)
    with pytest.raises(ConfigurationError, match="source"):
        text_corpus("shakespeare")


# ------------------------------------------------------------------ the estimator contract
def test_concentration_is_the_dirichlet_alpha_and_alpha_is_deprecated():
    corpus = ["abcab", "bca", "aab"]
    new = pyrobn.MarkovChain(order=1, concentration=0.5).fit(corpus)
    with pytest.warns(DeprecationWarning, match="concentration"):
        old = pyrobn.MarkovChain(order=1, alpha=0.5).fit(corpus)
    assert torch.equal(old.log_prob(corpus), new.log_prob(corpus))
    with pytest.warns(DeprecationWarning, match="concentration"):
        assert old.alpha == 0.5 == new.concentration
    # the reported row is the posterior mean under Dirichlet(α): the MODE of the posterior
    # under Dirichlet(α + 1) (a MAP adds α − 1 pseudo-counts, so that is α here)
    mode = torch.distributions.Dirichlet(new.posterior_concentration() + 1.0).mode
    rows = new.next_token_log_probs(new.context_keys.unsqueeze(1)).exp()[:, 1:]
    assert_close(rows, mode, rtol=1e-12, atol=0)


def test_fit_returns_the_chain_and_records_the_training_log_likelihood():
    corpus = ["abracadabra", "cabana", "ab"]
    mc = pyrobn.MarkovChain(order=2, concentration=0.3)
    assert mc.fit(corpus) is mc
    result = mc.fit_result_
    assert result.method == "counts" and result.converged and result.n_iter == 1
    assert result.final_objective == pytest.approx(float(mc.log_prob(corpus).sum()), rel=1e-12)


def test_sample_is_seeded_by_a_generator_of_its_own():
    mc = pyrobn.MarkovChain(order=1).fit(["abcab", "bca"])
    before = torch.get_rng_state()
    first = mc.sample(20, 10, seed=4)
    assert torch.equal(torch.get_rng_state(), before)
    assert first == mc.sample(20, 10, seed=4)
    torch.manual_seed(0)
    unseeded = mc.sample(20, 10)
    torch.manual_seed(0)
    assert unseeded == mc.sample(20, 10)  # its seed comes from torch's global stream


@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_graph_is_figura_4_of_order_k(k):
    mc = pyrobn.MarkovChain(order=k)
    g = mc.graph(6)
    assert g.names == [f"x_{t}" for t in range(1, 7)]
    assert all(n.role == "observed" and n.discrete for n in g.nodes)
    for t in range(1, 7):
        assert set(g.parents(f"x_{t}")) == {f"x_{s}" for s in range(max(1, t - k), t)}
    # the Markov property of order k: x_t is independent of x_{t-k-1} given the k before
    if 6 - k - 1 >= 1:
        between = [f"x_{s}" for s in range(6 - k, 6)]
        assert g.d_separated("x_6", f"x_{6 - k - 1}", between)
        assert k == 0 or not g.d_separated("x_6", f"x_{6 - k - 1}", between[1:])
    assert len(mc.graph().names) == max(4, k + 2)


def test_graph_independences_hold_in_the_chains_own_joint():
    """The joint of the first four tokens, built from the fitted order-2 chain's rows (all
    outcomes, </s> included, as symbols): every independence the graph implies holds to
    1e-12, and x_4 depends on x_1 when x_3 alone is given."""
    mc = pyrobn.MarkovChain(order=2, concentration=0.7).fit(["abca", "bbc", "cab", "a"])
    outcomes = [i for i, t in enumerate(mc.vocab) if t != BOS]
    bos = mc.index[BOS]

    def row(context):
        return mc.next_token_log_probs(torch.tensor([context])).exp()[0, outcomes]

    m = len(outcomes)
    joint = torch.zeros([m] * 4, dtype=torch.float64)
    for idx in itertools.product(range(m), repeat=4):
        tokens = [bos, bos] + [outcomes[i] for i in idx]
        p = 1.0
        for t in range(4):
            p = p * row(tokens[t : t + 2])[idx[t]]
        joint[idx] = p
    assert float(joint.sum()) == pytest.approx(1.0, rel=1e-12)
    g = mc.graph(4)
    names = g.names
    for i, j in itertools.combinations(range(4), 2):
        others = [k for k in range(4) if k not in (i, j)]
        for r in range(len(others) + 1):
            for cond in itertools.combinations(others, r):
                if g.d_separated(names[i], names[j], [names[k] for k in cond]):
                    assert _dependence(joint, i, j, list(cond)) < 1e-12
    assert _dependence(joint, 0, 3, [2]) > 1e-3


def _dependence(joint, a, b, given):
    keep = [a, b, *given]
    drop = [k for k in range(joint.dim()) if k not in keep]
    marginal = joint.sum(drop) if drop else joint
    marginal = marginal.permute(*[sorted(keep).index(k) for k in keep])
    conditional = marginal / marginal.sum((0, 1), keepdim=True)
    pa, pb = conditional.sum(1, keepdim=True), conditional.sum(0, keepdim=True)
    return float((conditional - pa * pb).abs().max())


@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_n_parameters_counts_the_rows_the_chain_can_meet(k):
    """Brute force: every context reachable from the start (k <s> then tokens), each a row
    over the tokens and </s> with one entry fixed by the sum."""
    mc = pyrobn.MarkovChain(order=k).fit(["abcab", "bca"])
    tokens = [t for t in mc.vocab if t not in (BOS, EOS)]
    contexts = set()
    for n in range(k + 1):
        for seq in itertools.product(tokens, repeat=n):
            contexts.add(((BOS,) * k + seq)[len(seq) :] if k else ())
    assert mc.n_parameters == len(contexts) * len(tokens)
    with pytest.raises(ConfigurationError, match="not fitted"):
        _ = pyrobn.MarkovChain(order=k).n_parameters


def test_a_loaded_chain_is_validated(tmp_path):
    from pyrobn.errors import CheckpointError

    mc = pyrobn.MarkovChain(order=2).fit(["abcab", "bca"])
    mc.save(tmp_path / "ok.pt")
    for change in (
        lambda s: s["state_dict"].__setitem__("ngram_counts", -s["state_dict"]["ngram_counts"]),
        lambda s: s["state_dict"].__setitem__("ngram_keys", s["state_dict"]["ngram_keys"].flip(0)),
        lambda s: s["state_dict"].__setitem__(
            "context_counts", s["state_dict"]["context_counts"] + 1
        ),
        lambda s: s["state_dict"]["_extra_state"].__setitem__("vocab", ["<s>", 3]),
    ):
        state = torch.load(tmp_path / "ok.pt", weights_only=True)
        change(state)
        torch.save(state, tmp_path / "bad.pt")
        with pytest.raises(CheckpointError):
            pyrobn.MarkovChain.load(tmp_path / "bad.pt")


def test_size_guards(monkeypatch):
    from pyrobn.errors import SizeLimitError

    mc = pyrobn.MarkovChain(order=1).fit(["abcab", "bca"])
    with pytest.raises(SizeLimitError, match="sampling 1000000000000 sequences"):
        mc.sample(10**12, 5)
    high = pyrobn.MarkovChain(order=4).fit(["abcab", "bca"])
    monkeypatch.setenv("PYROBN_MEMORY_BUDGET", "4K")
    with pytest.raises(SizeLimitError, match="dense"):
        high.transition_matrix()  # 6^5 entries
