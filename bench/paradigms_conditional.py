"""Class-conditional generation (eq. 19) of the autoregressive model and the flow on the
book's digits: the class accuracy and FD of 1000 conditional samples, scored by the
benchmark's classifier (:mod:`pyrobn.evaluation`), and the test NLL of x given its label.

    python bench/paradigms_conditional.py ar      # bench/paradigms.py's PixelCNN, n_classes=10
    python bench/paradigms_conditional.py flow    # its spline flow, n_classes=10, 40 epochs

The autoregressive model may be trained with label dropout (``--p-uncond P``, default 0:
p(x | y) alone) and sampled with classifier-free guidance (``--guidance W [W ...]``, one
line per weight from one fit; default 0, the model's p(x | y)), at sampling temperatures
``--temperature T [T ...]`` (default 1). Guided (W > 0) or tempered (T != 1) draws no
longer follow p(x | y); the test NLL is always the exact -log p(x | y).

    python bench/paradigms_conditional.py ar --p-uncond 0.2 --guidance 0 1   # the README row
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import pyrobn
import pyrobn.evaluation as ev

sys.path.insert(0, str(Path(__file__).parent))
from paradigms import ar_model, flow_model  # the benchmark's configurations


class _Guided:
    """The model's sampler at guidance w, for :func:`pyrobn.evaluation.sample_quality`."""

    def __init__(
        self, model: pyrobn.AutoregressiveModel, guidance: float, temperature: float = 1.0
    ) -> None:
        self.model, self.guidance, self.n_classes = model, guidance, model.n_classes
        self.temperature = temperature

    def sample(self, n: int, **kwargs: Any) -> Any:
        return self.model.sample(n, guidance=self.guidance, temperature=self.temperature, **kwargs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", choices=["ar", "flow"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--p-uncond", type=float, default=0.0, help="ar: label dropout")
    parser.add_argument(
        "--guidance", type=float, nargs="+", default=[0.0], help="ar: guidance weights"
    )
    parser.add_argument(
        "--temperature", type=float, nargs="+", default=[1.0], help="ar: sampling temperatures"
    )
    parser.add_argument("--save", type=Path, default=None, help="save the fitted model here")
    args = parser.parse_args()
    if args.model == "flow" and (args.p_uncond or any(args.guidance) or args.temperature != [1.0]):
        parser.error("--p-uncond, --guidance and --temperature apply to the autoregressive model")
    data = pyrobn.datasets.book_digits(device="cpu")
    clf = ev.train_classifier(
        data.x_train, data.y_train, data.x_val, data.y_val, levels=17, seed=0,
        x_test=data.x_test, y_test=data.y_test,
    )  # fmt: skip
    if args.model == "ar":
        model, epochs, extra = ar_model(n_classes=10, p_uncond=args.p_uncond), 300, {}
    else:
        model, epochs, extra = flow_model(n_classes=10), 40, {"val_samples": 4}
    started = time.perf_counter()
    model.fit(
        data.x_train, data.y_train, epochs=epochs, x_val=data.x_val, y_val=data.y_val,
        patience=25, seed=args.seed, progress=False, **extra,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    if args.save is not None:
        model.save(args.save)
    nll = float(model.nll(data.x_test, data.y_test, seed=args.seed).mean())
    settings = [(w, t) for w in args.guidance for t in args.temperature]
    for w, t in settings if args.model == "ar" else [(0.0, 1.0)]:
        sampler = _Guided(model, w, t) if args.model == "ar" else model
        quality = ev.sample_quality(sampler, clf, data.x_test, n=1000, seed=args.seed)
        setting = (
            f" (p_uncond {args.p_uncond:g}, guidance {w:g}, temperature {t:g})"
            if args.model == "ar"
            else ""
        )
        print(
            f"{args.model} conditional{setting}: class accuracy "
            f"{quality['class_accuracy']:.3f}, FD {quality['fd']:.2f}, test NLL given y "
            f"{nll:.2f} ({model.nll_kind}), fit {seconds:.0f} s",
            flush=True,
        )


if __name__ == "__main__":
    main()
