"""Issue 18's benchmark: the diffusion model and the GAN on the book's digits split.

    python bench/paradigms18.py                     # 3 seeds, every row (hours on 2 cores)
    python bench/paradigms18.py --quick             # 1 seed, a few epochs: does it run?
    python bench/paradigms18.py --rows diffusion,gan --seeds 0,1,2 --json out.json

Every row goes through the shared harness (:mod:`pyrobn.evaluation`, issue 17): the test
NLL in nats/image (the diffusion model's bound, over all T steps; "none" for the GAN),
bits/dim, the Fréchet distance of 1000 samples to the test images in the features of the
digit classifier trained on the training split, that classifier's accuracy on 100
samples of each class of a class-conditional model, samples per second (the sampler the
model uses by default), and the seconds per training epoch against a plain-PyTorch loop
of the same networks (``compare_epoch_times``: interleaved runs, medians, one run).
Rows:

    diffusion                 DiffusionModel, T = 1000, log-SNR schedule, data prediction
    diffusion (conditional)   the same with n_classes = 10, guidance w = 2 when sampling
    diffusion, 100 steps      the unconditional model sampled by DDIM over 100 steps
    GAN, GAN (conditional)    GAN, MLP generator and discriminator, 17 levels dequantised
    VAE                       pyrobn.VAE with a categorical decoder (the sample-quality
                              reference of the GAN), when the VAE has one (issue 17)
    VAE (early stopping)      the README's VAE (``bench/vae.py --book``: latent 16, hidden
                              (256, 256), ELU, batch 64, lr 3e-4, mean-field ELBO, the epoch
                              of 150 with the best validation -ELBO kept): the VAE the GAN's
                              samples are compared with, not the overfitted one above
    VAE (conditional)         the same, a ConditionalVAE (eq. 19: the one-hot label joins
                              the encoder's and the decoder's inputs), trained and
                              validated on -ELBO of log p(x | y); NLL given the test labels
    VAE (conditional in every layer)
                              the same with ``condition_every_layer=True``: the label
                              also enters every later layer of both networks (a learned
                              projection of y added to each pre-activation)

``--cvae-temperatures 0.8,0.6`` adds, for each conditional VAE row, rows sampled at those
latent temperatures (z ~ N(0, τ² I): not the model's p(x | y); same model, same NLL).

The plain-PyTorch loops are :func:`pyrobn.models.diffusion.reference.train_reference`'s
step (the bound written in its SNR form) and :func:`pyrobn.models.gan.train_reference`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from typing import Any

import torch

import pyrobn
import pyrobn.evaluation as ev
from pyrobn.models.diffusion import DiffusionModel
from pyrobn.models.diffusion.reference import ReferenceDiffusion
from pyrobn.models.gan import GAN, ReferenceGAN

#: the configurations measured (the README's table)
DIFFUSION = {
    "levels": 17,
    "timesteps": 1000,
    "schedule": "log_snr",
    "hidden": (256, 256),
    "dropout": 0.2,
}
DIFFUSION_FIT = {"epochs": 100, "batch_size": 128, "time_samples": 4, "lr": 1e-3, "eval_every": 20}
GAN_CONFIG = {"levels": 17, "latent_dim": 16, "hidden": (256, 256)}
GAN_FIT = {"epochs": 1200, "batch_size": 64, "lr": 2e-4}
GUIDANCE = 2.0
ROWS = (
    "diffusion",
    "diffusion (conditional)",
    "GAN",
    "GAN (conditional)",
    "VAE",
    "VAE (early stopping)",
    "VAE (conditional)",
    "VAE (conditional in every layer)",
)
#: ``bench/vae.py --book``'s configuration (the README's VAE row)
VAE_BOOK = {"latent_dim": 16, "hidden": (256, 256), "activation": "elu"}
VAE_BOOK_FIT = {"epochs": 150, "batch_size": 64, "lr": 3e-4, "loss": "meanfield"}


def _diffusion(conditional: bool, seed: int) -> DiffusionModel:
    torch.manual_seed(seed)
    extra = {"n_classes": 10, "guidance": GUIDANCE} if conditional else {}
    return DiffusionModel(64, **DIFFUSION, **extra)


def _gan(conditional: bool, seed: int) -> GAN:
    torch.manual_seed(seed)
    return GAN(64, **GAN_CONFIG, n_classes=10 if conditional else 0)


def _vae(seed: int) -> Any:
    """The categorical VAE (17 levels), initialised from ``seed``."""
    with pyrobn.random.seeded(seed):
        return pyrobn.VAE(64, latent_dim=8, hidden=(256, 128), likelihood="categorical", levels=17)


def _vae_book(conditional: bool, seed: int, every_layer: bool = False) -> Any:
    """``bench/vae.py --book``'s VAE (VAE_BOOK), initialised from ``seed``; with
    ``conditional`` the ConditionalVAE of eq. 19 with the same networks, the one-hot label
    concatenated to the encoder's and the decoder's inputs (and added to every later layer
    with ``every_layer``)."""
    with pyrobn.random.seeded(seed):
        if conditional:
            extra = {"condition_every_layer": True} if every_layer else {}
            return pyrobn.ConditionalVAE(
                64, n_classes=10, likelihood="categorical", levels=17, **VAE_BOOK, **extra
            )
        return pyrobn.VAE(64, likelihood="categorical", levels=17, **VAE_BOOK)


def _vae_early_stopping(vae: Any, data: Any, seed: int, epochs: int) -> Any:
    """Train ``vae`` as ``bench/vae.py --book`` does (VAE_BOOK_FIT) for ``epochs`` epochs and
    keep the parameters of the epoch with the best validation -ELBO (10 draws, seed 1);
    a class-conditional VAE (``n_classes > 0``) is trained and validated given the labels,
    -ELBO of log p(x | y)."""
    import copy

    labels = bool(getattr(vae, "n_classes", 0))
    train = (data.x_train, data.y_train) if labels else (data.x_train,)
    val = (data.x_val, data.y_val) if labels else (data.x_val,)
    per_epoch = math.ceil(len(data.x_train) / VAE_BOOK_FIT["batch_size"])
    best: dict[str, Any] = {"val": math.inf, "state": None}

    def keep_best(step: int, loss: float) -> None:
        if (step + 1) % per_epoch == 0:
            value = -float(vae.elbo(*val, num_samples=10, seed=1).mean())
            if value < best["val"]:
                best.update(val=value, state=copy.deepcopy(vae.state_dict()))

    vae.fit(*train, steps=epochs * per_epoch, batch_size=VAE_BOOK_FIT["batch_size"],
            lr=VAE_BOOK_FIT["lr"], loss=VAE_BOOK_FIT["loss"], seed=seed, progress=False,
            callback=keep_best)  # fmt: skip
    vae.load_state_dict(best["state"])
    return vae


def _timing_diffusion(conditional: bool, data: Any, epochs: int, repeats: int) -> ev.EpochTiming:
    """Seconds per epoch of DiffusionModel.fit and of the plain loop on the same network."""
    x, y = data.x_train, data.y_train if conditional else None
    model = _diffusion(conditional, 100)
    ref = ReferenceDiffusion.like(model)
    ref.train()
    B, K = DIFFUSION_FIT["batch_size"], DIFFUSION_FIT["time_samples"]
    n = x.shape[0]
    plain = ev.plain_torch_trainer(
        ref.parameters(),
        lambda idx: ref.loss(x[idx], None if y is None else y[idx], None, K, drop=True) * (n / B),
        n, B, lr=DIFFUSION_FIT["lr"],
    )  # fmt: skip

    def pyro_run(e: int) -> None:
        model.fit(x, y, epochs=e, batch_size=B, time_samples=K, lr=DIFFUSION_FIT["lr"],
                  progress=False)  # fmt: skip

    return ev.compare_epoch_times(
        {"plain PyTorch": plain, "pyrobn": pyro_run}, epochs=epochs, repeats=repeats
    )


def _timing_gan(conditional: bool, data: Any, epochs: int, repeats: int) -> ev.EpochTiming:
    x, y = data.x_train, data.y_train if conditional else None
    model = _gan(conditional, 100)
    ref = ReferenceGAN.like(model)
    B = GAN_FIT["batch_size"]
    per_epoch = math.ceil(x.shape[0] / B)
    opt = [torch.optim.Adam(p, lr=GAN_FIT["lr"], betas=(0.5, 0.999))
           for p in (ref.critic.parameters(), ref.generator.parameters())]  # fmt: skip

    def plain(e: int) -> None:  # the body of train_reference, with persistent optimisers
        ref.train()
        for _ in range(e * per_epoch):
            real, fake, c = ref.batch(x, y, B)
            d_loss = ref.critic_loss(real, fake.detach(), c)
            opt[0].zero_grad()
            d_loss.backward()
            opt[0].step()
            g_loss = ref.bce(fake, c, 1.0)
            opt[1].zero_grad()
            g_loss.backward()
            opt[1].step()
            float(d_loss), float(g_loss)

    def pyro_run(e: int) -> None:
        model.fit(x, y, epochs=e, batch_size=B, lr=GAN_FIT["lr"], progress=False)

    return ev.compare_epoch_times(
        {"plain PyTorch": plain, "pyrobn": pyro_run}, epochs=epochs, repeats=repeats
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, a few epochs")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--rows", default=",".join(ROWS), help=f"a subset of {ROWS}")
    parser.add_argument("--timing-epochs", type=int, default=2)
    parser.add_argument("--timing-repeats", type=int, default=3)
    parser.add_argument(
        "--vae-epochs",
        type=int,
        default=VAE_BOOK_FIT["epochs"],
        help="epochs of the early-stopped VAE rows (the best validation epoch is kept)",
    )
    parser.add_argument(
        "--cvae-temperatures",
        default="",
        help="latent temperatures τ (comma-separated) at which each conditional VAE is also "
        "sampled, as extra rows",
    )
    parser.add_argument("--json", default=None, help="write the rows and the summary here")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    temperatures = [float(t) for t in args.cvae_temperatures.split(",") if t.strip()]
    rows_wanted = [r.strip() for r in args.rows.split(",")]
    for r in rows_wanted:
        if r not in ROWS:
            parser.error(f"unknown row {r!r}; choose from {ROWS}")
    diffusion_fit, gan_fit = dict(DIFFUSION_FIT), dict(GAN_FIT)
    n_samples = 1000
    if args.quick:  # a check that the script runs, not a measurement
        seeds = seeds[:1]
        DIFFUSION.update(timesteps=50, hidden=(32, 32))
        GAN_CONFIG.update(hidden=(32, 32))
        diffusion_fit.update(epochs=2, eval_every=1)
        gan_fit.update(epochs=2)
        args.timing_epochs, args.timing_repeats = 1, 1
        n_samples = 200
    data = pyrobn.datasets.digits(split="book", levels=17)
    classifier = ev.train_classifier(
        data.x_train, data.y_train, data.x_val, data.y_val, levels=17,
        x_test=data.x_test, y_test=data.y_test, epochs=20 if args.quick else 200,
    )  # fmt: skip
    print(f"classifier test accuracy {classifier.test_accuracy:.3f}", flush=True)
    rows: list[ev.BenchmarkRow] = []
    timings: dict[str, ev.EpochTiming] = {}
    for name in rows_wanted:
        conditional = "conditional" in name
        if name.startswith("diffusion"):
            timings[name] = _timing_diffusion(
                conditional, data, args.timing_epochs, args.timing_repeats
            )
        elif name.startswith("GAN"):
            timings[name] = _timing_gan(conditional, data, args.timing_epochs, args.timing_repeats)
        if name in timings:
            t = timings[name]
            print(f"{name}: {t.seconds['pyrobn']:.3f} s/epoch, plain PyTorch "
                  f"{t.seconds['plain PyTorch']:.3f} (ratio {t.ratio('pyrobn'):.2f}; runs "
                  f"{t.runs})", flush=True)  # fmt: skip
        for seed in seeds:
            y_train = data.y_train if conditional else None
            y_val = data.y_val if conditional else None
            start = time.perf_counter()
            if name.startswith("diffusion"):
                model = _diffusion(conditional, seed)
                model.fit(data.x_train, y_train, x_val=data.x_val, y_val=y_val, seed=seed,
                          progress=False, **diffusion_fit)  # fmt: skip
            elif name.startswith("GAN"):
                model = _gan(conditional, seed)
                model.fit(data.x_train, y_train, seed=seed, progress=False, **gan_fit)
            elif name.startswith("VAE ("):
                epochs = 2 if args.quick else args.vae_epochs
                vae = _vae_book(conditional, seed, every_layer="every layer" in name)
                model = _vae_early_stopping(vae, data, seed, epochs)
            else:
                model = _vae(seed)
                model.fit(data.x_train, steps=(20 if args.quick else 5000), seed=seed,
                          progress=False)  # fmt: skip
            fit_seconds = time.perf_counter() - start
            timing = None
            if name in timings:
                t = timings[name]
                timing = (t.seconds["pyrobn"], t.seconds["plain PyTorch"])
            row = _evaluate(name, model, data, classifier, n_samples, seed, timing)
            row.extra["fit_seconds"] = fit_seconds
            rows.append(row)
            print(f"{name} seed {seed}: NLL {row.nll:.2f} ({row.nll_kind}), FD {row.fd:.2f}, "
                  f"class acc {row.class_accuracy:.3f}, {row.samples_per_second:.0f} samples/s, "
                  f"fit {fit_seconds:.0f} s", flush=True)  # fmt: skip
            if name == "diffusion":  # the faster sampler on the same model
                faster = _Steps(model, min(100, model.timesteps))
                fast = ev.sample_quality(faster, classifier, data.x_test, n=n_samples, seed=seed)
                rate = ev.samples_per_second(faster, 200, seed=seed)
                rows.append(dataclasses.replace(
                    row, name="diffusion, 100 steps", fd=fast["fd"], samples_per_second=rate,
                    extra=dict(row.extra)))  # fmt: skip
            if conditional and name.startswith("VAE"):  # the same model at other τ
                for tau in temperatures:
                    cooled = _Temperature(model, tau)
                    q = ev.sample_quality(cooled, classifier, data.x_test, n=n_samples, seed=seed)
                    rows.append(dataclasses.replace(
                        row, name=f"{name}, τ = {tau:g}", fd=q["fd"],
                        class_accuracy=q["class_accuracy"], extra=dict(row.extra)))  # fmt: skip
                    print(f"{name} seed {seed}, τ = {tau:g}: FD {q['fd']:.2f}, class acc "
                          f"{q['class_accuracy']:.3f}", flush=True)  # fmt: skip
    summary = ev.summarize(rows)
    print()
    print(ev.format_table(summary))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": [r.as_dict() for r in rows], "summary": summary,
                       "timings": {k: {"seconds": v.seconds, "runs": v.runs}
                                   for k, v in timings.items()}}, f, indent=2)  # fmt: skip


def _evaluate(
    name: str, model: Any, data: Any, classifier: Any, n_samples: int, seed: int, timing: Any
) -> ev.BenchmarkRow:
    """``ev.evaluate``, but samples/s of a conditional model with one class for every draw:
    the harness's speed warm-up asks for 8 samples with the n labels of the timed runs,
    which models that check the labels' length refuse (reported to issue 17)."""
    conditional = int(getattr(model, "n_classes", 0) or 0)
    y = data.y_test if conditional else None
    score = ev.nll_score(model, data.x_test, y, seed=seed)
    quality = ev.sample_quality(model, classifier, data.x_test, n=n_samples, seed=seed)
    rate = ev.samples_per_second(model, 200, seed=seed, **({"y": 3} if conditional else {}))
    per_epoch, reference = timing if timing is not None else (math.nan, math.nan)
    return ev.BenchmarkRow(
        name, score.nats, score.stderr, score.kind, score.bits_per_dim, quality["fd"],
        quality["class_accuracy"], rate, per_epoch, reference, seed,
    )  # fmt: skip


class _Temperature:
    """A conditional VAE sampled at latent temperature τ (z ~ N(0, τ² I)), for the harness."""

    def __init__(self, model: Any, temperature: float) -> None:
        self.model, self.temperature = model, temperature
        self.n_classes = model.n_classes
        self.nll_kind = model.nll_kind

    def sample(self, n: int, *, y: Any = None, seed: int | None = None) -> torch.Tensor:
        return self.model.sample(n, y=y, seed=seed, temperature=self.temperature)


class _Steps:
    """A diffusion model sampled over fewer steps (DDIM, η = 1), for the harness."""

    def __init__(self, model: DiffusionModel, steps: int) -> None:
        self.model, self.steps = model, steps
        self.n_classes = model.n_classes
        self.nll_kind = model.nll_kind

    def sample(self, n: int, *, y: Any = None, seed: int | None = None) -> torch.Tensor:
        return self.model.sample(n, y=y, seed=seed, steps=self.steps)


if __name__ == "__main__":
    main()
