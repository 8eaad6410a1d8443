# %% [markdown]
# # 09 · Variational autoencoders
#
# The lecture ("Aproximación Variacional") introduces an encoder network
# $q_\phi(z\mid x) = \mathcal N(\mu_\phi(x), \operatorname{diag}\sigma^2_\phi(x))$ next to the
# generative model $p(x, z) = p(z)\,p_\theta(x\mid z)$, $p(z) = \mathcal N(0, I)$, and shows by
# Jensen's inequality that
#
# $$\log p_\theta(x) = \mathrm{ELBO}(\phi,\theta;x)
# + D_{KL}(q_\phi(z\mid x)\,\|\,p_\theta(z\mid x)),$$
#
# $$\mathrm{ELBO} = \mathbb E_q[\log p_\theta(x\mid z)]
# - D_{KL}(q_\phi(z\mid x)\,\|\,p(z)).$$
#
# The chapter draws the same model as a Bayesian network (2.2.2.2, Figura 9): $z \to x$
# for generation, $x \to z$ for inference. `pyrobn.VAE` writes it as a Pyro model/guide
# pair and trains it with SVI (`Trace_ELBO`, reparametrised samples
# $z = \mu + \sigma\,\epsilon$). Here we (1) measure the manifold hypothesis on the swiss
# roll (2.2.4, Figura 13), (2) train a VAE on 8×8 digits and use its latent space:
# reconstructions, samples, interpolation (2.2.4.2) and attribute vectors (2.2.4.3, eq. 21),
# (3) report the honest number, the importance-weighted $\log p(x)$ on test digits, and
# (4) put the deterministic autoencoder (AE) of the lecture side by side.

# %%
import matplotlib.pyplot as plt
import torch
from sklearn.manifold import Isomap
from sklearn.neighbors import KNeighborsRegressor

import pyrobn
from pyrobn.plots.latent import image_grid, latent_scatter, loss_curves
from pyrobn.tutorial import Tutorial

tut = Tutorial(
    "09_vae",
    figures=[
        "swiss_roll_latent",
        "training",
        "digits_latent",
        "reconstructions",
        "samples",
        "interpolation",
        "attributes",
        "ae_vs_vae",
    ],
    title="Variational autoencoders",
)
device = pyrobn.device()
pyrobn.set_seed(0)

# %% [markdown]
# ## 1. The manifold hypothesis on the swiss roll
#
# The roll lives in $\mathbb R^3$ but has two degrees of freedom: the roll parameter $t$
# and the height. Does a VAE with a 2-D latent space find them? We standardise the
# three coordinates and use a normal likelihood with a fixed scale $\sigma = 0.05$
# (a learned $\sigma$ explains everything as noise and leaves $z$ unused: posterior
# collapse, which we observed). We colour the held-out points' latent means by $t$ and
# measure how well one latent direction orders them: Spearman's $|\rho|$ on held-out
# points, along the direction fitted to the training points (least squares on the ranks
# of $t$; `pyrobn.datasets.best_direction_spearman`).
#
# We train the same VAE, for the same total number of steps, from two starts:
#
# - **a random start** (the usual initialisation): the ELBO's gradient keeps the roll
#   rolled up. The windings fold and break into patches, and $|\rho| \approx 0.1$-$0.35$.
#   The latent still holds both coordinates, as a curved chart: a 10-nearest-neighbour
#   regression on the latent means recovers $t$ with $R^2 \approx 0.83$-$0.98$ and the
#   height with $R^2 \approx 0.98$. Tuning did not fix this: β annealed from 50 to 1, the
#   IWAE bound with 8-32 samples, restarts picked by ELBO, several scalings, widths and
#   learning rates (about 70 runs) reached at best $|\rho| = 0.89$. From a near-linear
#   start the best coarse code is the x-z plane, a flat copy of the spiral, and
#   refining it never unrolls it.
# - **an Isomap start**: `VAE.init_from_embedding` first fits the encoder to a chart of the
#   data from scikit-learn's `Isomap` (geodesic distances on a 10-NN graph) and the
#   decoder to its inverse, then `fit` maximises the ELBO as before. This is the start
#   t-SNE takes from PCA and UMAP from a spectral embedding. The ELBO decides whether the
#   chart survives: it does, it orders the points ($|\rho| \ge 0.998$ in all 80 runs we
#   tried at the default learning rate; `examples/swiss_roll_starts.py`), and its held-out
#   ELBO is several nats per point *higher* than the random start's (both are recorded
#   below).
#
# So the VAE's own objective prefers the unrolled chart (the manifold hypothesis: two
# coordinates explain the data best), but gradient descent from a random start does not
# find it.

# %%
x_roll, t_roll = pyrobn.datasets.swiss_roll(tut.steps(3000, 500), noise=0.1, seed=0)
x_roll_test, t_roll_test = pyrobn.datasets.swiss_roll(tut.steps(1000, 200), noise=0.1, seed=1)
mean, std = x_roll.mean(0), x_roll.std(0)
roll, roll_test = (x_roll - mean) / std, (x_roll_test - mean) / std
chart_steps, elbo_steps = tut.steps(1000, 20), tut.steps(3000, 40)
isomap_chart = Isomap(n_neighbors=10, n_components=2).fit_transform(roll.cpu().numpy())

roll_latents = {}
for start in ("random", "isomap"):
    pyrobn.set_seed(0)  # the same initial networks for both starts
    vae_roll = pyrobn.VAE(3, latent_dim=2, hidden=(128, 128), likelihood="normal", obs_scale=0.05)
    vae_roll.to(device)
    n_steps = elbo_steps + chart_steps  # the same number of Adam steps for both starts
    if start == "isomap":
        vae_roll.init_from_embedding(roll, isomap_chart, steps=chart_steps, seed=0, progress=False)
        n_steps = elbo_steps
    vae_roll.fit(roll, steps=n_steps, batch_size=256, lr=1e-3, seed=0, progress=False)
    z_fit, z_test = (vae_roll.encode(r).cpu().numpy() for r in (roll, roll_test))
    roll_latents[start] = z_test
    rho = pyrobn.datasets.best_direction_spearman(z_fit, t_roll, z_test, t_roll_test)
    tut.record(f"swiss_roll_{start}_start_spearman_rho", rho, fmt=".3f")
    elbo = vae_roll.elbo(roll_test, num_samples=10, seed=0).mean().item()
    tut.record(f"swiss_roll_{start}_start_test_elbo", elbo, fmt=".2f")
    if start == "random":
        # how much of (t, height) the curved chart holds: 10-NN regression
        for name, fit_target, test_target in [
            ("t", t_roll, t_roll_test),
            ("height", x_roll[:, 1], x_roll_test[:, 1]),
        ]:
            knn = KNeighborsRegressor(10).fit(z_fit, fit_target.cpu().numpy())
            r2 = knn.score(z_test, test_target.cpu().numpy())
            tut.record(f"swiss_roll_random_start_knn_r2_{name}", r2, fmt=".3f")

fig = plt.figure(figsize=(16, 4.5))
ax = fig.add_subplot(1, 3, 1, projection="3d")
xr = x_roll_test.cpu().numpy()
ax.scatter(xr[:, 0], xr[:, 1], xr[:, 2], c=t_roll_test.cpu().numpy(), s=3, cmap="viridis")
ax.view_init(elev=10, azim=110)
ax.set_title("swiss roll (held out), colour = t")
for i, (start, z_test) in enumerate(roll_latents.items()):
    latent_scatter(
        z_test,
        t_roll_test,
        fig.add_subplot(1, 3, 2 + i),
        label="t",
        title=f"VAE latent means, {start} start",
    )
tut.save(fig, "swiss_roll_latent")

# %% [markdown]
# ## 2. A VAE on the digits
#
# scikit-learn's 8×8 digits, binarised (pixel > 0.5), so that the Bernoulli likelihood
# (the lecture's BCE) is a normalised distribution and $\log p(x)$ is a real
# log-probability in nats. We train a 2-D latent VAE (for pictures) with the Monte Carlo
# `Trace_ELBO` and with the lecture's closed-form KL (`TraceMeanField_ELBO`):
# the same objective, the second with less noise.

# %%
x_train, y_train, x_test, y_test = pyrobn.datasets.digits(binarize=True, device=device)
n_train = tut.steps(len(x_train), 300)
x_train, y_train = x_train[:n_train], y_train[:n_train]
steps = tut.steps(6000, 60)

vae = pyrobn.VAE(64, latent_dim=2, hidden=(256, 128)).to(device)
history = vae.fit(x_train, steps=steps, lr=2e-3, seed=0, progress=False)
vae_mf = pyrobn.VAE(64, latent_dim=2, hidden=(256, 128)).to(device)
history_mf = vae_mf.fit(x_train, steps=steps, lr=2e-3, loss="meanfield", seed=0, progress=False)

fig, ax = plt.subplots(figsize=(7, 3.5))
loss_curves({"Trace_ELBO": history, "TraceMeanField_ELBO": history_mf}, ax, per=len(x_train))
ax.set_ylabel("-ELBO per image (nats)")
ax.set_yscale("log")
tut.save(fig, "training")

# %% [markdown]
# ## 3. The honest number: importance-weighted $\log p(x)$ on test digits
#
# The ELBO is a lower bound. The importance-weighted estimate with $K$ draws from $q$,
# $\log \frac1K \sum_k p(x, z_k)/q(z_k\mid x)$, rises towards $\log p(x)$ as $K$ grows
# (eq. 20 with $q$ as proposal). We also train an 8-D latent VAE: more latent room,
# better likelihood.

# %%
vae8 = pyrobn.VAE(64, latent_dim=8, hidden=(256, 128)).to(device)
vae8.fit(x_train, steps=steps, lr=2e-3, seed=0, progress=False)
K = tut.steps(1000, 20)
for name, model in [("latent2", vae), ("latent2_meanfield", vae_mf), ("latent8", vae8)]:
    elbo = model.elbo(x_test, num_samples=K, seed=0).mean().item()
    log_lik = model.log_likelihood(x_test, num_samples=K, seed=0).mean().item()
    tut.record(f"test_elbo_{name}", elbo, fmt=".3f")
    tut.record(f"test_log_likelihood_{name}", log_lik, fmt=".3f")

# %% [markdown]
# ## 4. The latent space
#
# The encoder's means of the test digits, coloured by their label (the VAE never saw a
# label), then reconstructions (top: data, bottom: $\mathbb E[x\mid z=\mu_\phi(x)]$) and
# ancestral samples $z \sim \mathcal N(0, I)$, $x \sim p_\theta(x\mid z)$ (chapter 2.1),
# shown as the decoder's means and as binary draws.

# %%
fig, ax = plt.subplots(figsize=(5.5, 4.5))
latent_scatter(vae.encode(x_test), y_test, ax, discrete=True, label="digit", title="VAE latent")
tut.save(fig, "digits_latent")

fig, axes = plt.subplots(2, 1, figsize=(8, 2.4))
image_grid(x_test[:16], axes[0], title="test digits")
image_grid(vae8.reconstruct(x_test[:16]), axes[1], title="reconstructions (8-D latent)")
tut.save(fig, "reconstructions")

fig, axes = plt.subplots(2, 1, figsize=(8, 2.4))
image_grid(vae8.sample(16, seed=1, mean=True), axes[0], title="samples: E[x | z]")
image_grid(vae8.sample(16, seed=1), axes[1], title="samples: x ~ p(x | z)")
tut.save(fig, "samples")

# %% [markdown]
# ## 5. Semantic interpolation (2.2.4.2) and attribute vectors (2.2.4.3, eq. 21)
#
# Rows go from one test digit to another: in pixel space ($x_t = t x_1 + (1-t) x_0$),
# then through the latent space, linearly and by slerp. Then an attribute, the slant
# of the strokes (from the ink's second moments): $\mathcal X^+$ are the training digits
# that lean most to the right (top quarter within each class, so that the direction is
# not "a 1 minus a 7"), $\mathcal X^-$ those that lean most to the left,
# $z_{attr} = z^+ - z^-$ (eq. 21), and each row shows
# $x_\lambda = \text{decoder}(\text{encoder}(x) + \lambda z_{attr})$ for growing $\lambda$.
# (An "ink" attribute, tried first, barely moves: on binarised 8×8 digits the amount of
# ink is mostly fixed by the class, and its latent direction is short.) The mean slant of
# the shifted digits rises monotonically with $\lambda$, but at $|\lambda| \approx 3$ the
# digit itself starts to change: the direction is not disentangled from the identity.

# %%
pairs = [(0, 1), (2, 3), (4, 5)]
x0 = x_test[[a for a, _ in pairs]]
x1 = x_test[[b for _, b in pairs]]
t = torch.linspace(0, 1, 8, device=device)
pixel_rows = (1 - t)[None, :, None] * x0[:, None] + t[None, :, None] * x1[:, None]
linear_rows = vae8.interpolate(x0, x1, steps=8, method="linear")
slerp_rows = vae8.interpolate(x0, x1, steps=8, method="slerp")
fig, axes = plt.subplots(3, 1, figsize=(5, 6))
image_grid(pixel_rows, axes[0], title="pixel space")
image_grid(linear_rows, axes[1], title="latent, linear")
image_grid(slerp_rows, axes[2], title="latent, slerp")
tut.save(fig, "interpolation")

row_index, col_index = torch.meshgrid(
    torch.arange(8.0, device=device), torch.arange(8.0, device=device), indexing="ij"
)
row_index, col_index = row_index.flatten(), col_index.flatten()


def slant(images: torch.Tensor) -> torch.Tensor:
    """-cov(row, column) / var(row) of the ink: > 0 when the digit leans right ("/")."""
    w = images / images.sum(-1, keepdim=True)
    d_row = row_index - (w @ row_index)[..., None]
    d_col = col_index - (w @ col_index)[..., None]
    return -(w * d_row * d_col).sum(-1) / (w * d_row**2).sum(-1)


score = slant(x_train)
right, left = [], []
for digit in range(10):  # quartiles within each class, so the vector is not "a 1 minus a 7"
    rows_c = (y_train == digit).nonzero().squeeze(1)
    by_slant = rows_c[torch.argsort(score[rows_c])]
    quarter = max(1, len(by_slant) // 4)
    left.append(by_slant[:quarter])
    right.append(by_slant[-quarter:])
lean = vae8.attribute_vector(x_train[torch.cat(right)], x_train[torch.cat(left)])
lams = torch.linspace(-3, 3, 7)
shifted = vae8.shift(x_test[:50], lean, lams)  # (7 values of λ, 50 digits, 64)
fig, ax = plt.subplots(figsize=(5, 4))
image_grid(shifted[:, :5].transpose(0, 1), ax, title="λ = " + ", ".join(f"{v:g}" for v in lams))
tut.save(fig, "attributes")
slant_by_lambda = [round(v, 3) for v in slant(shifted).mean(-1).tolist()]
tut.record("mean_slant_of_shifted_test_digits_by_lambda", slant_by_lambda)

# %% [markdown]
# ## 6. AE against VAE (lecture: "Diferencia conceptual entre AE y VAE")
#
# The autoencoder minimises the MSE $\frac1N\sum_i \|x_i - f_\theta(h_\phi(x_i))\|^2$ with
# a deterministic code; nothing ties its latent space to a prior, so codes spread and
# leave holes, and there is nothing to sample from. The VAE's KL term pulls the codes
# towards $\mathcal N(0, I)$: a compact, continuous latent space that can be sampled.

# %%
ae = pyrobn.Autoencoder(64, latent_dim=2, hidden=(256, 128), sigmoid_output=True).to(device)
ae.fit(x_train, steps=steps, lr=2e-3, seed=0, progress=False)
tut.record("ae_test_mse", ae.mse(x_test), fmt=".4f")
tut.record("vae_test_mse", ((vae.reconstruct(x_test) - x_test) ** 2).mean().item(), fmt=".4f")
fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
latent_scatter(ae.encode(x_test), y_test, axes[0], discrete=True, label="digit", title="AE codes")
latent_scatter(vae.encode(x_test), y_test, axes[1], discrete=True, label="digit", title="VAE means")
tut.save(fig, "ae_vs_vae")

# %% [markdown]
# **What to take away.** The ELBO is the trainable bound; the importance-weighted estimate
# is the number to compare models by, and it sits above the ELBO by the gap
# $D_{KL}(q\,\|\,p(z\mid x))$. Latent means organise the data without labels, and the
# latent space supports interpolation and attribute arithmetic (eq. 21).

# %% [markdown]
# ## When one device is not enough: data-parallel training
#
# `VAE.fit` runs on `pyrobn.infer.fit_svi`, which trains data-parallel over
# `torch.distributed` when the script is launched by `torchrun` with several processes.
# Every process draws the same global minibatch of the `"data"` plate, keeps its own
# shard of `batch_size` rows (its ELBO scaled to the whole data set), and the gradients
# are averaged before each step: R processes take the step one process would take on
# R × `batch_size` rows, down to the noise of the reparametrised z. Nothing in this
# tutorial changes; only the launch does (`examples/distributed_vae.py` is this VAE on the
# digits):
#
# ```bash
# # 2 CPU processes on one machine (Gloo)
# torchrun --standalone --nproc_per_node=2 examples/distributed_vae.py --steps 500
# # one node with 8 GPUs (NCCL, one GPU per process)
# torchrun --standalone --nproc_per_node=8 examples/distributed_vae.py
# # two nodes: run on each with its own --node_rank
# torchrun --nnodes=2 --nproc_per_node=8 --node_rank=0 \
#     --master_addr=<node 0> --master_port=29500 examples/distributed_vae.py
# ```
#
# Rank 0 shows the progress bar and writes the checkpoint (`checkpoint=...`), which
# resumes in a single process; a dead peer or data that cannot be split raise
# `pyrobn.errors.DistributedError` on every rank instead of hanging.
