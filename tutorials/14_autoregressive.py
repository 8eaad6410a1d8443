# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # 14 · Autoregressive models: eq. 15 on digits and on the course notes
#
# Notes, section 2.2.2.1, eq. 15 and Figura 8. An autoregressive model (ARM) factorises
# the joint distribution with the chain rule, in a fixed order of the variables, and
# assumes no independence at all:
#
# p(x) = p(x_1) ∏_{t=1}^{T-1} p(x_{t+1} | x_1, …, x_t)                     (eq. 15)
#
# Its Bayesian network (Figura 8) is the complete DAG in that order. Every conditional
# p(x_{t+1} | x_≤t) is given by *one* network whose output t sees the inputs before t
# only: a masked MLP (MADE), causal convolutions (a PixelCNN on images, dilated 1-D
# convolutions on text) or a causal transformer (`pyrobn.nn`). With no latent variable
# the likelihood is exact, and as a Pyro model the ARM is one observed site with an
# empty guide: the ELBO that `fit_svi` maximises *is* log p(x).
#
# The benchmark is the one of the book the chapter follows (J. Tomczak, *Deep Generative
# Modeling*): scikit-learn's 8×8 digits in their original order, train [:1000],
# validation [1000:1350], test [1350:], 17 grey levels as categories, and the test
# negative log-likelihood in nats per image. The book's ARM (causal 1-D convolutions),
# run on this machine, reaches **86.6**.

# %%
import itertools
import math

import matplotlib.pyplot as plt
import torch
from pyro.infer import Trace_ELBO

import pyrobn
from pyrobn.datasets import book_digits, text_corpus
from pyrobn.errors import ConfigurationError
from pyrobn.evaluation import bits_per_dim, frechet_distance, train_classifier
from pyrobn.tutorial import Tutorial

tut = Tutorial(
    "14_autoregressive",
    figures=[
        "dag",
        "samples_temperature",
        "completion",
        "conditional_samples",
        "text_perplexity",
        "generated_text",
    ],
    title="Autoregressive models (eq. 15): digits and text",
)
torch.set_num_threads(1)
data = book_digits(levels=17, device="cpu")
x_train, x_val, x_test = data.x_train, data.x_val, data.x_test
if tut.smoke:
    x_train, x_val, x_test = x_train[:120], x_val[:60], x_test[:60]
BOOK_ARM = 86.6

# %% [markdown]
# ## The Bayesian network of an ARM (Figura 8)
# Every variable has all earlier ones as parents: below, the first five pixels of a
# digit in raster order (all 64 would draw 2016 edges), and the class y of eq. 19 as a
# parent of every pixel in the conditional model.

# %%
arm = pyrobn.AutoregressiveModel(
    64,
    "categorical",
    levels=17,
    network="pixelcnn",
    hidden=tut.steps(64, 16),
    layers=tut.steps(5, 2),
    dropout=0.2,
)
fig, axes = plt.subplots(1, 2, figsize=(11, 4))
arm.graph(max_nodes=5).draw(ax=axes[0])
axes[0].set_title("p(x) = Π_t p(x_t | x_<t)  (Figura 8)")
pyrobn.AutoregressiveModel(64, "categorical", 17, n_classes=10, hidden=8).graph(4).draw(ax=axes[1])
axes[1].set_title("p(x | y) = Π_t p(x_t | x_<t, y)  (eq. 19)")
tut.save(fig, "dag")

# %% [markdown]
# ## Exact, and a distribution: a check by enumeration
# On three variables with three levels the 27 probabilities can be listed: they sum to 1,
# and the SVI loss of the model with its empty guide is exactly −log p(x).

# %%
small = pyrobn.AutoregressiveModel(3, "categorical", 3, network="transformer", hidden=8, heads=2)
states = torch.cartesian_prod(*[torch.arange(3.0)] * 3)
total = float(small.nll(states).neg().exp().sum())
loss = Trace_ELBO().loss(small.model, small.guide, states)
tut.record("enumerated_total_probability", total, fmt=".6f")
tut.check_close("the 27 probabilities of eq. 15 sum to 1", total, 1.0, atol=1e-5)
tut.check_close(
    "the SVI loss with the empty guide is -log p(x)",
    loss,
    float(small.nll(states).sum()),
    rtol=1e-5,
)

# %% [markdown]
# ## Training on the book's digits
# A PixelCNN conditioner without blind spot (vertical and horizontal stacks of masked
# convolutions), a categorical conditional over the 17 levels, dropout 0.2, Adam; the
# validation NLL is measured every epoch and the best state is kept (early stopping, as
# the book's code does). `bench/paradigms.py benchmark` repeats this over three seeds.

# %%
arm.fit(
    x_train,
    epochs=tut.steps(300, 1),
    batch_size=64,
    x_val=x_val,
    patience=tut.steps(25, 1),
    seed=0,
    progress=False,
)
test_nll = float(arm.nll(x_test).mean())
tut.record("arm_epochs", len(arm.validation_nll_))
tut.record("arm_test_nll_nats", test_nll, fmt=".2f")
tut.record("arm_test_bits_per_dim", bits_per_dim(test_nll, 64), fmt=".3f")
tut.record("book_arm_test_nll_nats", BOOK_ARM)
tut.check_close(
    "early stopping keeps the state of the best validation NLL",
    arm.nll(x_val).mean(),
    min(arm.validation_nll_),
    rtol=1e-5,
)
if not tut.smoke:
    tut.check(
        "the ARM beats the book's 86.6 nats/image on the test split",
        test_nll < BOOK_ARM,
        f"test NLL {test_nll:.2f} vs book {BOOK_ARM}",
    )

# %% [markdown]
# ## Temperature (notes 2.2.2)
# The chapter links every paradigm to thermodynamics; for ARMs it is the temperature of
# generation: each conditional is raised to 1/T and renormalised,
# p_T(x_t | x_<t) ∝ p(x_t | x_<t)^{1/T}, before its draw. T < 1 concentrates on the
# likeliest grey level (clean, similar strokes), T > 1 flattens every conditional
# (noise). Ancestral sampling takes 64 sequential network passes; the PixelCNN runs on
# the rows up to the current pixel only. The model's NLL of the draws measures it: the
# lower T, the likelier the images drawn.

# %%
temperatures = [0.5, 0.8, 1.0, 1.3]
draw_nll = {}
fig, axes = plt.subplots(len(temperatures), 8, figsize=(8, 4.4))
for row, T in enumerate(temperatures):
    draws = arm.sample(32, temperature=T, seed=row)
    draw_nll[T] = float(arm.nll(draws).mean())
    for col in range(8):
        axes[row, col].imshow(draws[col].reshape(8, 8), cmap="gray_r", vmin=0, vmax=16)
        axes[row, col].axis("off")
    axes[row, 0].set_title(f"T = {T}", fontsize=8, loc="left")
tut.save(fig, "samples_temperature")
tut.record("nll_of_draws_by_temperature", draw_nll)
shown = ", ".join(f"T = {T}: {v:.1f}" for T, v in draw_nll.items())
tut.check("T = 0.5 draws likelier digits than T = 1.3", draw_nll[0.5] < draw_nll[1.3], shown)
if not tut.smoke:  # after one smoke epoch neighbouring temperatures differ by ~1 s.e.
    tut.check(
        "the NLL of the draws rises with T at every step",
        all(draw_nll[a] < draw_nll[b] for a, b in itertools.pairwise(temperatures)),
        shown,
    )

# %% [markdown]
# ## Completion: the rest of a digit given its top half
# In raster order the top four rows come first, so p(bottom | top) is again a product
# of the model's conditionals: ancestral sampling continues from the observed prefix,
# exactly. (A mask whose observed pixels do not come first in the order is refused.)

# %%
originals = x_test[:6]
mask = torch.zeros(6, 64, dtype=torch.bool)
mask[:, :32] = True
fills = [arm.complete(originals, mask, temperature=0.8, seed=s) for s in range(3)]
fig, axes = plt.subplots(6, 5, figsize=(5, 6))
for i in range(6):
    top = originals[i].clone().float()
    top[32:] = float("nan")
    images = [originals[i], top, *[f[i] for f in fills]]
    for j, image in enumerate(images):
        axes[i, j].imshow(image.reshape(8, 8), cmap="gray_r", vmin=0, vmax=16)
        axes[i, j].axis("off")
for j, name in enumerate(["test digit", "observed", "completion 1", "2", "3"]):
    axes[0, j].set_title(name, fontsize=8)
tut.save(fig, "completion")
kept = sum(torch.equal(f[:, :32], originals[:, :32].float()) for f in fills)
tut.check(
    "completion keeps the observed top half", kept == len(fills), f"{kept}/{len(fills)} draws"
)
bottom_first = torch.zeros(6, 64, dtype=torch.bool)
bottom_first[:, 32:] = True
try:
    arm.complete(originals, bottom_first, seed=0)
    refusal = ""
except ConfigurationError as error:
    refusal = str(error)
tut.check(
    "a mask whose observed pixels do not come first in the order is refused",
    bool(refusal),
    refusal or "completed without error",
)

# %% [markdown]
# ## Class-conditional generation (eq. 19)
# Adding the label y to every factor, p(x | y) = Π_t p(x_t | x_<t, y), makes the same
# network a generator of a chosen digit (the one-hot label enters every layer of both stacks,
# as in the conditional PixelCNN of van den Oord et al. 2016). A small
# classifier trained on the training split reads the samples: the fraction read as the
# requested class is the sample-quality figure of the benchmark harness
# (`pyrobn.evaluation`), beside the Fréchet distance in that classifier's features.

# %%
carm = pyrobn.AutoregressiveModel(
    64,
    "categorical",
    17,
    network="pixelcnn",
    hidden=tut.steps(64, 16),
    layers=tut.steps(5, 2),
    dropout=0.2,
    n_classes=10,
)
y_train, y_val = data.y_train[: len(x_train)], data.y_val[: len(x_val)]
carm.fit(
    x_train,
    y_train,
    epochs=tut.steps(300, 1),
    x_val=x_val,
    y_val=y_val,
    patience=tut.steps(25, 1),
    seed=0,
    progress=False,
)
clf = train_classifier(
    data.x_train,
    data.y_train,
    data.x_val,
    data.y_val,
    levels=17,
    epochs=tut.steps(200, 5),
    seed=0,
    x_test=data.x_test,
    y_test=data.y_test,
)
per_class = tut.steps(50, 4)
labels = torch.arange(10).repeat_interleave(per_class)
cond = carm.sample(len(labels), y=labels, seed=0)
accuracy = clf.accuracy(cond, labels)
fd_cond = frechet_distance(clf.features(cond), clf.features(data.x_test))
fd_free = frechet_distance(clf.features(arm.sample(len(labels), seed=1)), clf.features(data.x_test))
tut.record("classifier_test_accuracy", clf.test_accuracy, fmt=".3f")
tut.record("conditional_class_accuracy", accuracy, fmt=".3f")
cond_nll = float(carm.nll(x_test, data.y_test[: len(x_test)]).mean())
tut.record("conditional_test_nll_nats", cond_nll, fmt=".2f")
tut.check_close(
    "the conditional ARM's early stopping scores validation digits with their labels",
    carm.nll(x_val, y_val).mean(),
    min(carm.validation_nll_),
    rtol=1e-5,
)
tut.record("fd_unconditional_samples", fd_free, fmt=".2f")
tut.record("fd_conditional_samples", fd_cond, fmt=".2f")
fig, axes = plt.subplots(10, 6, figsize=(4.2, 7))
for digit in range(10):
    for j in range(6):
        image = cond[digit * per_class + j % per_class]
        axes[digit, j].imshow(image.reshape(8, 8), cmap="gray_r", vmin=0, vmax=16)
        axes[digit, j].axis("off")
    axes[digit, 0].set_title(f"y = {digit}", fontsize=7, loc="left")
tut.save(fig, "conditional_samples")
if not tut.smoke:
    tut.check(
        "over 80% of the conditional samples are read as the class asked for",
        accuracy > 0.8,
        f"accuracy {accuracy:.3f}",
    )

# %% [markdown]
# ## The same model on text, against the n-gram chains of 2.1.3.3
# An order-k Markov chain (tutorial 07) is an ARM with a window: p(x_t | x_<t) =
# p(x_t | x_{t-k}..x_{t-1}), estimated by counting each context. Past order 3 the
# counts run out: most contexts of the held-out text were never seen, and add-α smoothing
# makes their rows uniform. A neural ARM with a window of W characters shares strength
# across contexts instead: here dilated causal convolutions (a receptive field of 60
# previous characters) on the same characters (`TextAutoregressiveModel` uses the Markov chain's
# tokenizer and vocabulary), trained by the same `fit_svi`. Both are scored by
# held-out perplexity exp(−(1/N) Σ log p(x_t | x_<t)), each paragraph's `</s>` counted.

# %%
train_text, held_out = text_corpus("apuntes", held_out=0.1, seed=0)
if tut.smoke:
    train_text, held_out = train_text[:20], held_out[:4]
orders = [1, 2, 3, 4, 5] if not tut.smoke else [1, 2]
markov = {}
for k in orders:
    mc = pyrobn.MarkovChain(order=k, concentration=0.05, unknown="unk", min_count=2)
    mc.fit(train_text)
    markov[k] = mc.perplexity(held_out)
    tut.record(f"markov_order{k}_perplexity", markov[k], fmt=".3f")
split = int(0.9 * len(train_text))
lm = pyrobn.TextAutoregressiveModel(
    window=tut.steps(128, 16),
    network="conv",
    hidden=tut.steps(256, 16),
    layers=tut.steps(8, 2),
    dropout=0.1,
)
lm.fit(
    train_text[:split],
    epochs=tut.steps(40, 1),
    validation=train_text[split:],
    patience=tut.steps(4, 1),
    seed=0,
    progress=False,
    batch_size=64,
)
neural = lm.perplexity(held_out)
tut.record("neural_receptive_field", lm.receptive_field)
tut.record("neural_perplexity", neural, fmt=".3f")
best_k = min(markov, key=markov.get)
tut.record("best_markov_order", best_k)
fig, ax = plt.subplots(figsize=(6, 3.6))
ax.plot(list(markov), list(markov.values()), "o-", label="order-k Markov chain (counts)")
ax.axhline(neural, color="C3", label=f"neural ARM, causal conv (window {lm.window})")
ax.set(xlabel="order k", ylabel="held-out perplexity", title="course notes, characters")
ax.legend()
tut.save(fig, "text_perplexity")
if not tut.smoke:
    tut.check(
        "past order 3 the counts run out: held-out perplexity rises with the order",
        markov[3] < markov[4] < markov[5],
        ", ".join(f"order {k}: {markov[k]:.3f}" for k in (3, 4, 5)),
    )
    tut.check(
        "the causal convolutions see 60 previous characters",
        lm.receptive_field >= 60,
        f"receptive field {lm.receptive_field}",
    )
    tut.check(
        "the neural ARM beats the best n-gram chain on held-out text",
        neural < markov[best_k],
        f"perplexity {neural:.3f} vs order {best_k}: {markov[best_k]:.3f}",
    )

# %% [markdown]
# ### Generated text at several temperatures
# The prompt "la red " continued by ancestral sampling at T = 0.5, 0.8, 1.0: low T
# repeats the commonest phrasing of the notes, high T invents words.

# %%
lines = []
for T in (0.5, 0.8, 1.0):
    text = lm.generate("la red ", n=tut.steps(200, 30), temperature=T, seed=1)
    lines.append((f"T = {T}", text))
    tut.record(f"generated_T{T}", text)
tut.check(
    "every generation continues the prompt",
    all(text.startswith("la red ") for _, text in lines),
    " | ".join(repr(text[:12]) for _, text in lines),
)
fig, ax = plt.subplots(figsize=(10, 3.2))
ax.axis("off")
for i, (name, text) in enumerate(lines):
    wrapped = "\n".join(text[j : j + 100] for j in range(0, min(len(text), 200), 100))
    ax.text(0, 1 - i / 3, f"{name}:", fontsize=9, weight="bold", va="top", transform=ax.transAxes)
    ax.text(
        0.1,
        1 - i / 3,
        wrapped,
        fontsize=8,
        family="monospace",
        va="top",
        parse_math=False,
        transform=ax.transAxes,
    )
ax.set_title("neural ARM, prompt 'la red '")
tut.save(fig, "generated_text")
tut.record("bits_per_character", math.log2(neural), fmt=".3f")
