"""The book's digits benchmark for the paradigms of notes 2.2.2 (issue 17), measured here.

    python bench/paradigms.py timing            # time per epoch vs a plain-PyTorch loop
    python bench/paradigms.py benchmark --seeds 0 1 2   # test NLL ± sd, FD, samples/s
    python bench/paradigms.py benchmark --seeds 1 --timing-json t.json --out s1.json
    python bench/paradigms.py table s0.json s1.json s2.json   # one table from several runs
    python bench/paradigms.py flow-libraries    # zuko vs Pyro's transforms, same flow
    python bench/paradigms.py text              # character AR model vs n-gram chains
    (add --quick for a few epochs of everything; --out FILE.json keeps the numbers;
    seeds may run as separate processes and be merged by ``table``)

Every model trains on the book's split (:func:`pyrobn.datasets.book_digits`: train
[:1000], validation [1000:1350], test [1350:], 17 grey levels) with early stopping on
the validation NLL, and is scored by :mod:`pyrobn.evaluation`: the test NLL in nats per
image (exact for the autoregressive model, an upper bound for the dequantised flow),
bits/dim, the Fréchet distance of 1000 samples to the test images in the features of a
digit classifier trained on the training split, samples per second, and the time per
epoch against a plain-PyTorch loop of the same network (interleaved runs, medians).
The book's code, run on this machine: ARM 86.6 (exact), integer discrete flow 142.7
(exact), RealNVP 167.2 (bound), VAE 96.4 (-ELBO).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from typing import Any

import torch
import torch.nn.functional as F

import pyrobn
from pyrobn.evaluation import (
    BenchmarkRow,
    bits_per_dim,
    compare_epoch_times,
    evaluate,
    format_table,
    plain_torch_trainer,
    summarize,
    train_classifier,
)
from pyrobn.models.autoregressive.model import build_network
from pyrobn.models.flow import zuko_flow

BOOK = {"ARM (causal conv)": 86.6, "IDF (integer flow)": 142.7, "RealNVP (bound)": 167.2}

#: the benchmark's models: name -> (class, constructor kwargs, fit kwargs)
AR_CONFIG = {
    "network": "pixelcnn",
    "hidden": 64,
    "layers": 5,
    "dropout": 0.2,
}
FLOW_CONFIG = {
    "transform": "spline_coupling",
    "n_transforms": 6,
    "hidden": (256, 256),
    "dequantization": "variational",
}


def ar_model(**overrides: Any) -> pyrobn.AutoregressiveModel:
    return pyrobn.AutoregressiveModel(64, "categorical", 17, **(AR_CONFIG | overrides))


def flow_model(**overrides: Any) -> pyrobn.NormalizingFlow:
    return pyrobn.NormalizingFlow(64, levels=17, **(FLOW_CONFIG | overrides))


# ------------------------------------------------------------------ plain-PyTorch twins
def ar_reference(x: torch.Tensor, batch: int, lr: float, config: dict[str, Any]):
    """The same conditioner (pyrobn.models.autoregressive.build_network), a plain loop."""
    c = AR_CONFIG | config
    net = build_network(
        c["network"],
        64,
        1,
        17,
        hidden=c["hidden"],
        layers=c["layers"],
        kernel_size=3,
        heads=4,
        dropout=c["dropout"],
        activation="relu",
        context_dim=0,
        image_shape=(8, 8),
    )
    net.train()
    n = x.shape[0]

    def loss_fn(idx: torch.Tensor) -> torch.Tensor:
        xb = x[idx]
        theta = net((2 * xb / 16 - 1).unsqueeze(-1))
        nll = F.cross_entropy(theta.reshape(-1, 17), xb.long().reshape(-1), reduction="sum")
        return nll * (n / xb.shape[0])

    return plain_torch_trainer(net.parameters(), loss_fn, n, batch, lr=lr)


def flow_reference(x: torch.Tensor, batch: int, lr: float, config: dict[str, Any]):
    """The same zuko flow and dequantiser, the dequantisation bound in plain PyTorch."""
    c = FLOW_CONFIG | config
    flow = zuko_flow(c["transform"], 64, 0, c["n_transforms"], c["hidden"])
    deq = None
    if c["dequantization"] == "variational":
        deq = zuko_flow("spline_coupling", 64, 64, 2, (128, 128))
    params = list(flow.parameters()) + (list(deq.parameters()) if deq is not None else [])
    n, L, alpha = x.shape[0], 17, 0.05

    def loss_fn(idx: torch.Tensor) -> torch.Tensor:
        xb = x[idx]
        if deq is None:
            u, log_q = torch.rand_like(xb), 0.0
        else:
            eps = torch.randn_like(xb)
            s, ladj = deq.transform(2 * xb / 16 - 1).inv.call_and_ladj(eps)
            u = torch.sigmoid(s)
            log_q = (-0.5 * eps**2 - 0.5 * math.log(2 * math.pi)).sum(-1) - ladj
            log_q = log_q - (F.logsigmoid(s) + F.logsigmoid(-s)).sum(-1)
        p = alpha + (1 - 2 * alpha) * (xb + u) / L
        y = torch.log(p) - torch.log1p(-p)
        ladj_pre = (math.log((1 - 2 * alpha) / L) - torch.log(p) - torch.log1p(-p)).sum(-1)
        log_px = flow().log_prob(y) + ladj_pre
        return -(log_px - log_q).sum() * (n / xb.shape[0])

    return plain_torch_trainer(params, loss_fn, n, batch, lr=lr)


# ------------------------------------------------------------------ commands
def timing(args: argparse.Namespace) -> dict[str, Any]:
    data = pyrobn.datasets.book_digits(device="cpu")
    x = data.x_train.float()
    out = {}
    for name, make, reference in (
        ("autoregressive", ar_model, ar_reference),
        ("flow", flow_model, flow_reference),
    ):
        torch.manual_seed(0)
        model = make()
        run_ref = reference(x, args.batch, 1e-3, {})

        def run_model(epochs: int, model=model) -> None:
            model.fit(x, epochs=epochs, batch_size=args.batch, progress=False)

        result = compare_epoch_times(
            {"plain PyTorch": run_ref, "pyrobn fit (fit_svi)": run_model},
            epochs=args.epochs,
            repeats=args.repeats,
        )
        ratio = result.ratio("pyrobn fit (fit_svi)")
        print(
            f"{name}: "
            + ", ".join(f"{k} {v:.3f} s/epoch" for k, v in result.seconds.items())
            + f"; ratio {ratio:.2f}x (medians of {args.repeats} x {args.epochs} epochs)"
        )
        out[name] = {"seconds": result.seconds, "runs": result.runs, "ratio": ratio}
    return out


def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    data = pyrobn.datasets.book_digits(device="cpu")
    clf = train_classifier(
        data.x_train,
        data.y_train,
        data.x_val,
        data.y_val,
        levels=17,
        seed=0,
        x_test=data.x_test,
        y_test=data.y_test,
    )
    print(f"feature classifier: test accuracy {clf.test_accuracy:.3f}")
    from pyrobn.evaluation import frechet_distance

    floor = frechet_distance(clf.features(data.x_train), clf.features(data.x_test))
    print(f"FD(train images, test images) = {floor:.2f} (the floor a perfect sampler nears)")
    if args.timing_json:
        with open(args.timing_json) as fh:
            times = json.load(fh)
    else:
        times = timing(args)
    per_epoch = {
        "autoregressive (PixelCNN)": times["autoregressive"]["seconds"],
        "flow (spline coupling, var. deq.)": times["flow"]["seconds"],
    }
    rows: list[BenchmarkRow] = []
    epochs = 3 if args.quick else args.max_epochs
    contenders = {
        "ar": ("autoregressive (PixelCNN)", ar_model, {"patience": args.patience}),
        "flow": (
            "flow (spline coupling, var. deq.)",
            flow_model,
            {"patience": args.patience, "val_samples": 4},
        ),
    }
    for seed in args.seeds:
        for name, make, fit_kwargs in (contenders[m] for m in args.models):
            started = time.perf_counter()
            model = make()
            model.fit(
                data.x_train,
                epochs=epochs,
                x_val=data.x_val,
                seed=seed,
                progress=False,
                **fit_kwargs,
            )
            wall = time.perf_counter() - started
            n_epochs = len(model.validation_nll_)
            seconds = per_epoch[name]
            row = evaluate(
                name,
                model,
                data.x_test,
                clf,
                seed=seed,
                speed_samples=200,
                timing=(seconds["pyrobn fit (fit_svi)"], seconds["plain PyTorch"]),
            )
            if isinstance(model, pyrobn.NormalizingFlow):
                row.nll = float(model.nll(data.x_test, num_samples=args.iw, seed=seed).mean())
                row.bits_per_dim = bits_per_dim(row.nll, data.x_test.shape[1])  # the same bound
            row.extra = {"epochs": n_epochs, "best_val": min(model.validation_nll_)}
            print(
                f"seed {seed} {name}: test NLL {row.nll:.2f} ({row.nll_kind}), FD {row.fd:.2f},"
                f" {row.samples_per_second:.0f} samples/s, {n_epochs} epochs "
                f"({wall / 60:.1f} min)",
                flush=True,
            )
            rows.append(row)
    summary = summarize(rows)
    print(format_table(summary))
    return {
        "rows": [r.as_dict() for r in rows],
        "summary": summary,
        "fd_floor": floor,
        "classifier_accuracy": clf.test_accuracy,
        "timing": times,
    }


def table(args: argparse.Namespace) -> dict[str, Any]:
    """Merge the rows of several ``benchmark --out`` files into one summary table."""
    rows = []
    for path in args.inputs:
        with open(path) as fh:
            for row in json.load(fh)["rows"]:
                row.pop("epoch_ratio", None)
                rows.append(BenchmarkRow(**row))
    summary = summarize(rows)
    print(format_table(summary))
    for name, stats in summary.items():
        print(
            f"{name}: test NLL {stats['nll']:.2f} ± {stats['nll_sd']:.2f} over "
            f"{stats['seeds']:.0f} seeds"
        )
    return {"summary": summary}


def flow_libraries(args: argparse.Namespace) -> dict[str, Any]:
    """The same spline coupling flow from zuko and from Pyro's frozen transforms."""
    import pyro.distributions as dist
    import pyro.distributions.transforms as T

    data = pyrobn.datasets.book_digits(device="cpu")
    x = data.x_train.float()
    out = {}
    for lib in ("zuko", "pyro"):
        torch.manual_seed(0)
        if lib == "zuko":
            flow = zuko_flow("spline_coupling", 64, 0, 4, (256, 256))
            params = list(flow.parameters())

            def log_p(y, flow=flow):
                return flow().log_prob(y)

            def draw(n, flow=flow):
                return flow().sample((n,))
        else:
            layers = []
            for _ in range(4):
                layers += [
                    T.spline_coupling(64, hidden_dims=[256, 256], count_bins=8, bound=5.0),
                    T.Permute(torch.randperm(64)),
                ]
            base = dist.Normal(torch.zeros(64), torch.ones(64)).to_event(1)
            pyro_flow = dist.TransformedDistribution(base, layers)
            params = [p for t in layers if isinstance(t, torch.nn.Module) for p in t.parameters()]

            def log_p(y, pyro_flow=pyro_flow):
                return pyro_flow.log_prob(y)

            def draw(n, pyro_flow=pyro_flow):
                return pyro_flow.sample((n,))

        def bound(xb, log_p=log_p):
            p = 0.05 + 0.9 * (xb + torch.rand_like(xb)) / 17
            ladj = (math.log(0.9 / 17) - torch.log(p) - torch.log1p(-p)).sum(-1)
            return -(log_p(torch.log(p) - torch.log1p(-p)) + ladj)

        run = plain_torch_trainer(params, lambda idx, b=bound: b(x[idx]).mean(), 1000, 64)
        times = []
        for _ in range(args.epochs):
            start = time.perf_counter()
            run(1)
            times.append(time.perf_counter() - start)
        with torch.no_grad():
            test = float(torch.stack([bound(data.x_test.float()) for _ in range(5)]).mean())
            start = time.perf_counter()
            draw(500)
            sample_s = time.perf_counter() - start
        times.sort()
        out[lib] = {
            "test_bound": test,
            "seconds_per_epoch": times[len(times) // 2],
            "sample_500_s": sample_s,
            "parameters": sum(p.numel() for p in params),
        }
        print(
            f"{lib}: test bound {test:.2f} nats/image after {args.epochs} epochs, "
            f"{times[len(times) // 2]:.2f} s/epoch, 500 samples in {sample_s:.2f} s",
            flush=True,
        )
    return out


def text(args: argparse.Namespace) -> dict[str, Any]:
    train, held_out = pyrobn.datasets.text_corpus("apuntes", held_out=0.1, seed=0)
    out: dict[str, Any] = {}
    for k in range(1, 6):
        mc = pyrobn.MarkovChain(order=k, alpha=0.05, unknown="unk", min_count=2).fit(train)
        out[f"markov_order{k}"] = mc.perplexity(held_out)
        print(f"order-{k} Markov chain: held-out perplexity {out[f'markov_order{k}']:.3f}")
    fit_train, val = train[: int(0.9 * len(train))], train[int(0.9 * len(train)) :]
    lm = pyrobn.TextAutoregressiveModel(
        window=args.window, network="conv", hidden=args.hidden, layers=args.layers, dropout=0.1
    )
    started = time.perf_counter()
    lm.fit(
        fit_train,
        epochs=2 if args.quick else args.max_epochs,
        validation=val,
        patience=args.patience,
        seed=0,
        progress=False,
        batch_size=64,
    )
    out["neural_perplexity"] = lm.perplexity(held_out)
    out["neural_minutes"] = (time.perf_counter() - started) / 60
    out["receptive_field"] = lm.receptive_field
    print(
        f"neural AR (conv, window {args.window}, receptive field {lm.receptive_field}): "
        f"held-out perplexity {out['neural_perplexity']:.3f} ({out['neural_minutes']:.1f} min)"
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "command", choices=["timing", "benchmark", "table", "flow-libraries", "text"]
    )
    parser.add_argument("inputs", nargs="*", help="table: benchmark --out files to merge")
    parser.add_argument("--models", nargs="+", default=["ar", "flow"], choices=["ar", "flow"])
    parser.add_argument(
        "--timing-json",
        type=str,
        default=None,
        help="benchmark: reuse a timing --out file instead of timing again",
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=3, help="epochs per timing run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--max-epochs", type=int, default=300)
    parser.add_argument("--patience", type=int, default=25)
    parser.add_argument("--iw", type=int, default=32, help="importance samples of the flow bound")
    parser.add_argument("--window", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--out", type=str, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.quick:
        args.epochs, args.repeats, args.seeds, args.max_epochs = 1, 1, [0], 3
    result = {
        "timing": timing,
        "benchmark": benchmark,
        "table": table,
        "flow-libraries": flow_libraries,
        "text": text,
    }[args.command](args)
    result["command"] = vars(args)
    result["torch_threads"] = torch.get_num_threads()
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(result, fh, indent=2, default=float)


if __name__ == "__main__":
    main()
