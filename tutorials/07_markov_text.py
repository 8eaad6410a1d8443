# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # 07 · Markov chains of order k: n-gram text models
#
# Notes, section 2.1.3.3, eq. 11 and Figura 4. A first-order Markov chain factorises
#
# p(x) = p(x_1) ∏_t p(x_{t+1} | x_t)                                      (eq. 11)
#
# and, when homogeneous, stores p(x_{t+1} = j | x_t = i) in a transition matrix P_ij.
# Order k conditions on the k previous tokens: k = 0 is the unigram (bag of words),
# k = 1 the bigram, k = 2 the trigram. `pyrobn.MarkovChain(order=k, concentration=α)`
# counts every (k+1)-gram (vectorised: each n-gram is hashed to one integer and counted
# with `torch.unique`) and smooths with add-α,
#
# p(w | h) = (N(h, w) + α) / (N(h) + α |V|),
#
# the posterior mean under a Dirichlet(α) prior on each row (α is the `concentration`, as
# everywhere in pyrobn; the posterior mean adds α pseudo-counts, a MAP estimate would add
# α − 1). Each text is padded with k start symbols `<s>` (which give p(x_1 … x_k) of eq. 11)
# and one end symbol `</s>`.
#
# The text: the course notes themselves (chapter 2, Spanish), shipped with pyrobn.

# %%
import itertools
import math

import matplotlib.pyplot as plt
import numpy as np
from scipy.optimize import minimize_scalar

import pyrobn
from pyrobn.datasets import text_corpus
from pyrobn.tutorial import Tutorial

tut = Tutorial(
    "07_markov_text",
    figures=["dag", "transition_matrix", "perplexity_vs_order", "smoothing", "generated_text"],
    title="n-gram Markov chains (eq. 11) on the course notes",
)
pyrobn.set_seed(0)
train, held_out = text_corpus("apuntes", held_out=0.1, seed=0)
if tut.smoke:
    train = train[:80]
tut.record("train_paragraphs", len(train))
tut.record("held_out_paragraphs", len(held_out))
tut.record("train_characters", sum(len(p) for p in train))

# %% [markdown]
# ## The Bayesian network of a chain of order k (Figura 4)
# Every x_t has the k previous tokens as parents: for k = 1 the chain of Figura 4, for
# k = 2 each token also hears the one before. The graph says which independences hold: given
# its k predecessors, x_t is independent of everything earlier (d-separation), which is what
# lets the chain store one table row per context instead of one per history.

# %%
fig, axes = plt.subplots(2, 1, figsize=(7, 5))
for ax, k in zip(axes, (1, 2)):
    chain = pyrobn.MarkovChain(order=k)
    chain.plot_graph(ax=ax, title=f"order {k}: p(x_t | x_(t-{k})..x_(t-1))")  # time left to right
    chain_graph = chain.graph()  # the graph drawn: x_1 .. x_4, skip edges as arcs
    independent = chain_graph.d_separated("x_4", "x_1", [f"x_{t}" for t in range(4 - k, 4)])
    tut.check(f"order {k}: x_4 is independent of x_1 given its {k} predecessors", independent)
    if k == 2:
        tut.check(
            "order 2: one predecessor does not cut x_4 from x_1",
            not chain_graph.d_separated("x_4", "x_1", ["x_3"]),
        )
    tut.record(f"order{k}_x4_independent_of_x1_given_parents", independent)
fig.suptitle("Figura 4: Markov chains of order 1 and 2 (x observed, discrete)")
tut.save(fig, "dag")

# %% [markdown]
# ## The bigram transition matrix P_ij (eq. 11)
# A character bigram is exactly eq. 11's chain over the alphabet. Below: P_ij among the
# 25 most frequent characters (rows: current character, columns: next).

# %%
alpha = 0.05
bigram = pyrobn.MarkovChain(order=1, concentration=alpha, unknown="unk", min_count=2).fit(train)
P = bigram.transition_matrix().cpu()
unigram_counts = pyrobn.MarkovChain(order=0, concentration=alpha, unknown="unk", min_count=2)
unigram_counts.fit(train)
frequent = unigram_counts.transition_matrix()[0].cpu().argsort(descending=True)[:25]
labels = [repr(bigram.vocab[i])[1:-1].replace(" ", "␣") for i in frequent]
fig, ax = plt.subplots(figsize=(7, 6))
im = ax.imshow(P[frequent][:, frequent], cmap="viridis")
ax.set_xticks(range(25), labels, fontsize=7)
ax.set_yticks(range(25), labels, fontsize=7)
ax.set(xlabel="next character j", ylabel="current character i",
       title="bigram P_ij = p(x_{t+1} = j | x_t = i)")  # fmt: skip
fig.colorbar(im, ax=ax, shrink=0.8)
tut.save(fig, "transition_matrix")
tut.record("p_after_q_of_u", float(P[bigram.index["q"], bigram.index["u"]]), fmt=".3f")
after_q = bigram.vocab[int(P[bigram.index["q"]].argmax())]
tut.check("in Spanish, q is followed by u", after_q == "u", f"most likely after q: {after_q!r}")
tut.check(  # 0.896 on the full text, 0.959 in smoke mode
    "p(u | q) > 0.85", tut.numbers["p_after_q_of_u"] > 0.85, f"{tut.numbers['p_after_q_of_u']:.3f}"
)
tut.check_close("every row of P is a distribution", P.sum(-1), np.ones(len(P)), atol=1e-12)
# add-α by hand: count "qu" and "q" in the (lower-cased) text; q and u are frequent
# characters, so neither is mapped to the unknown token
n_qu = sum(p.lower().count("qu") for p in train)
n_q = sum(p.lower().count("q") for p in train)
tut.check_close(
    "p(u | q) = (N(q, u) + α) / (N(q) + α |V|)",
    P[bigram.index["q"], bigram.index["u"]],
    (n_qu + alpha) / (n_q + alpha * bigram.n_outcomes),
    rtol=1e-12,
)

# %% [markdown]
# ## Order vs held-out perplexity
# Perplexity = exp(−(1/N) Σ log p(x_t | context)) on text the model has not seen: the
# effective number of equally likely next characters. More context predicts better, up
# to the point where most contexts of the held-out text were never seen in training
# (the table grows as |V|^k); the training perplexity keeps falling: overfitting.
#
# Words are much sparser than characters: with thousands of words, most word triples of
# the held-out text never occur in training, and add-α gives every unseen continuation
# the same tiny share. On Python's help topics the word bigram divides the unigram's
# perplexity by four, but the trigram gains almost nothing over the bigram (and on less
# text it loses): the reason real n-gram models use backoff or interpolation (Katz,
# Kneser–Ney), which pyrobn does not implement.

# %%
orders = list(range(6)) if not tut.smoke else [0, 1, 2]
models = {}
train_ppl, test_ppl = [], []
for k in orders:
    models[k] = pyrobn.MarkovChain(order=k, concentration=alpha, unknown="unk", min_count=2)
    models[k].fit(train)
    train_ppl.append(models[k].perplexity(train))
    test_ppl.append(models[k].perplexity(held_out))
    tut.record(f"char_order{k}_held_out_perplexity", test_ppl[-1], fmt=".2f")
    tut.record(f"char_order{k}_distinct_ngrams", int(models[k].ngram_keys.numel()))
    tut.record(f"char_order{k}_free_parameters", models[k].n_parameters)

# words: the same on Python's own English help topics (shipped with Python)
words_train, words_test = text_corpus("python-docs", held_out=0.1, seed=0)
if tut.smoke:
    words_train = words_train[:200]
word_ppl = []
for k in (0, 1, 2):
    mc = pyrobn.MarkovChain(order=k, concentration=0.01, level="word", unknown="unk", min_count=2)
    word_ppl.append(mc.fit(words_train).perplexity(words_test))
    tut.record(f"word_order{k}_held_out_perplexity", word_ppl[-1], fmt=".1f")

# the claims above, checked: more context predicts held-out characters better (up to the
# order where contexts become sparse), training perplexity keeps falling (overfitting),
# and the free parameters grow as |V|^k
shown = ", ".join(f"{p:.2f}" for p in test_ppl)
tut.check(
    "held-out characters: order 2 beats 1 beats 0",
    test_ppl[0] > test_ppl[1] > test_ppl[2],
    f"held-out perplexity by order: {shown}",
)
tut.check(
    "training perplexity keeps falling with the order",
    all(a > b for a, b in itertools.pairwise(train_ppl)),
    "training perplexity by order: " + ", ".join(f"{p:.2f}" for p in train_ppl),
)
tut.check(
    "the free parameters grow with the order",
    all(models[a].n_parameters < models[b].n_parameters for a, b in itertools.pairwise(orders)),
    str([models[k].n_parameters for k in orders]),
)
m_tokens = models[1].n_outcomes - 1
tut.check(
    "order k needs M (1 + M + ... + M^k) free parameters",
    all(
        models[k].n_parameters == m_tokens * sum(m_tokens**j for j in range(k + 1)) for k in orders
    ),
    f"M = {m_tokens} token types",
)
word_shown = f"word perplexity by order 0, 1, 2: {', '.join(f'{p:.1f}' for p in word_ppl)}"
if tut.smoke:  # on 200 paragraphs of words the bigram loses to the unigram, the trigram more
    tut.check("with little text, the word trigram loses", word_ppl[2] > word_ppl[1], word_shown)
    tut.check(
        "with little text, even the word bigram loses to the unigram",
        word_ppl[1] > word_ppl[0],
        word_shown,
    )
else:
    tut.check(
        "characters: order 3 predicts held-out text best", int(np.argmin(test_ppl)) == 3, shown
    )
    tut.check(
        "the word bigram divides the perplexity by four", word_ppl[0] > 4 * word_ppl[1], word_shown
    )
    tut.check("the word trigram gains almost nothing", word_ppl[2] > 0.95 * word_ppl[1], word_shown)

fig, axes = plt.subplots(1, 2, figsize=(10, 4))
axes[0].plot(orders, train_ppl, "o-", label="train")
axes[0].plot(orders, test_ppl, "s-", label="held out")
axes[0].set(xlabel="order k", ylabel="perplexity", yscale="log",
            title=f"characters, course notes (α = {alpha})")  # fmt: skip
axes[0].legend()
axes[1].bar(["unigram", "bigram", "trigram"], word_ppl, color=["C0", "C1", "C2"])
axes[1].set(ylabel="held-out perplexity", title="words, Python help topics (α = 0.01)")
tut.save(fig, "perplexity_vs_order")

# %% [markdown]
# ## Smoothing: α trades seen against unseen n-grams
# α → 0 is the maximum-likelihood estimate N(h, w)/N(h), which gives probability 0 (and
# infinite perplexity) to any n-gram the training text lacks; large α flattens every row
# towards uniform. The best α shrinks as the training text grows (more counts per context):
# the bigram's best α on a quarter of the text is larger than on all of it (a bounded 1-D
# search over log α).

# %%
alphas = np.logspace(-4, 1, 11 if not tut.smoke else 4)
smooth: dict[int, list[float]] = {}
for k in (1, 2, 3):
    smooth[k] = []
    for a in alphas:
        mc = pyrobn.MarkovChain(order=k, concentration=float(a), unknown="unk", min_count=2)
        smooth[k].append(mc.fit(train).perplexity(held_out))
fig, ax = plt.subplots(figsize=(6, 4))
for k, values in smooth.items():
    ax.plot(alphas, values, "o-", label=f"order {k}")
    best = int(np.argmin(values))
    tut.record(f"char_order{k}_best_alpha", float(alphas[best]), fmt=".1e")
    tut.record(f"char_order{k}_best_held_out_perplexity", values[best], fmt=".2f")
    tut.check(
        f"order {k}: the best α is neither ~0 (MLE) nor flat",
        0 < best < len(alphas) - 1,
        f"best α {alphas[best]:.1e} in [{alphas[0]:.0e}, {alphas[-1]:.0e}]",
    )
ax.set(xscale="log", yscale="log", xlabel="α", ylabel="held-out perplexity",
       title="add-α smoothing")  # fmt: skip
ax.legend()
tut.save(fig, "smoothing")


def best_bigram_alpha(texts: list[str]) -> float:
    """argmin over α in [1e-4, 10] of the held-out perplexity of the bigram fitted on texts."""

    def perplexity(log_alpha: float) -> float:
        mc = pyrobn.MarkovChain(order=1, concentration=10**log_alpha, unknown="unk", min_count=2)
        return mc.fit(texts).perplexity(held_out)

    found = minimize_scalar(perplexity, bounds=(-4, 1), method="bounded", options={"xatol": 0.01})
    return float(10**found.x)


alpha_quarter, alpha_all = best_bigram_alpha(train[: len(train) // 4]), best_bigram_alpha(train)
tut.record("bigram_best_alpha_quarter_vs_all_text", [alpha_quarter, alpha_all])
tut.check(
    "the bigram's best α shrinks as the text grows",
    alpha_all < alpha_quarter,
    f"best α {alpha_quarter:.3f} on a quarter of the text, {alpha_all:.3f} on all of it",
)

# %% [markdown]
# ## Generated text: ancestral sampling (notes 2.1.2)
# Each model generates by drawing one character at a time from p(x_t | context). The
# unigram ignores context (letter soup with the right letter frequencies), the bigram
# learns which letters follow which, the trigram and beyond produce syllables and real
# Spanish words. `temperature` < 1 sharpens p^(1/T) towards the most likely character.
#
# Watch the high orders fail: once a sample wanders into a context that never occurred in
# training, add-α makes that row uniform, and the text dissolves into random symbols
# (a backoff model would fall back on a shorter context instead).

# %%
samples = {}
for k in orders[:4] if len(orders) > 3 else orders:
    samples[k] = models[k].generate("la ", n=160, temperature=1.0, seed=1)
    print(f"order {k}: {samples[k]!r}")
cold = models[orders[-1]].generate("la ", n=160, temperature=0.5, seed=1)
print(f"order {orders[-1]}, T = 0.5: {cold!r}")
for k, text in samples.items():
    tut.record(f"sample_order{k}", text)
    tut.check(f"order {k}: the sample continues the prompt 'la '", text.startswith("la "))
    tut.check(
        f"order {k}: the same seed gives the same text",
        text == models[k].generate("la ", 160, 1.0, seed=1),
    )

fig, ax = plt.subplots(figsize=(10, 0.9 * (len(samples) + 1) + 0.5))
ax.axis("off")
lines = [(f"order {k}", t) for k, t in samples.items()] + [(f"order {orders[-1]}, T=0.5", cold)]
for i, (name, text) in enumerate(lines):
    wrapped = "\n".join(text[j : j + 95] for j in range(0, min(len(text), 190), 95))
    ax.text(0, 1 - i / len(lines), f"{name}:", fontsize=9, weight="bold", va="top",
            transform=ax.transAxes)  # fmt: skip
    ax.text(0.16, 1 - i / len(lines), wrapped, fontsize=8, family="monospace", va="top",
            parse_math=False,
            transform=ax.transAxes)  # fmt: skip
ax.set_title("text generated from the prompt 'la ' (seed 1)")
tut.save(fig, "generated_text")
tut.record("entropy_rate_bits_best_order",
           math.log2(min(test_ppl)), fmt=".2f")  # fmt: skip
