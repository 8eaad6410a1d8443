"""MarkovChain of order k (notes 2.1.3.3, eq. 11): counts and probabilities against brute
force, normalisation, the sampler against exact probabilities, text corpus, errors."""

from __future__ import annotations

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
    mc = pyrobn.MarkovChain(order=k, alpha=alpha, lower=False).fit([list(s) for s in train])
    expected = brute_force_log_prob(train, test, k, alpha)
    got = mc.log_prob([list(s) for s in test]).tolist()
    assert got == pytest.approx(expected, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("k", [0, 1, 2])
def test_rows_are_distributions(k, device):
    mc = pyrobn.MarkovChain(order=k, alpha=0.5).to(device).fit(["abracadabra", "cabana", "ab"])
    table = mc.transition_matrix()
    assert table.device.type == device.type
    assert table.shape == (mc.vocab_size**k, mc.vocab_size)
    torch.testing.assert_close(table.sum(-1), torch.ones_like(table[:, 0]), rtol=0, atol=1e-12)
    assert bool((table[:, mc.index[BOS]] == 0).all())


def test_maximum_likelihood_limit_is_relative_frequency():
    """alpha -> 0: p(w | h) = N(h, w) / N(h), the MLE of the transition matrix (eq. 11)."""
    mc = pyrobn.MarkovChain(order=1, alpha=1e-12).fit(["aab", "ab"])
    probs = mc.next_token_log_probs(torch.tensor([[mc.index["a"]]])).exp()[0]
    # after "a": a once, b twice
    assert float(probs[mc.index["a"]]) == pytest.approx(1 / 3)
    assert float(probs[mc.index["b"]]) == pytest.approx(2 / 3)


def test_sampler_matches_exact_probabilities():
    """First two tokens of 20,000 samples vs p(x1) p(x2 | x1), within 4 standard errors."""
    mc = pyrobn.MarkovChain(order=1, alpha=0.7).fit(["abca", "bbc", "cab", "a"])
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
    mc = pyrobn.MarkovChain(order=0, alpha=0.5).fit(["aaaaab"])
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
    mc = pyrobn.MarkovChain(order=2, alpha=0.01, level="word").fit(
        ["the cat sat on the mat .", "the dog sat on the log ."]
    )
    text = mc.generate("the cat", n=10, temperature=0.5, seed=3)
    assert text.startswith("the cat sat on the")
    assert text == mc.generate("the cat", n=10, temperature=0.5, seed=3)


def test_order_lowers_held_out_perplexity_on_the_notes():
    """Character n-grams on the shipped course notes: more context, better prediction."""
    train, held_out = text_corpus("apuntes")
    perplexity = [
        pyrobn.MarkovChain(order=k, alpha=0.05, unknown="unk", min_count=2)
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
    mc = pyrobn.MarkovChain(order=1, alpha=0.5).fit(corpus)
    conc = mc.posterior_concentration()
    contexts = mc.context_keys.unsqueeze(1)  # order 1: the context hash is the token id
    add_alpha = mc.next_token_log_probs(contexts).exp()[:, 1:]  # drop the <s> column
    torch.testing.assert_close(conc / conc.sum(-1, keepdim=True), add_alpha, rtol=1e-12, atol=0)
    rows, outcomes = mc.ngram_data(corpus)
    elbos = []
    for seed in range(3):
        pyro.set_rng_seed(seed)
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
    with pytest.raises(ConfigurationError, match="alpha"):
        pyrobn.MarkovChain(alpha=0.0)
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
    mc = pyrobn.MarkovChain(order=2, alpha=0.1, unknown="unk").to(device).fit(train[:20])
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
