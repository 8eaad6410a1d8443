"""Class-conditional generation (eq. 19) of the autoregressive model and the flow on the
book's digits: the class accuracy and FD of 1000 conditional samples, scored by the
benchmark's classifier (:mod:`pyrobn.evaluation`), and the test NLL of x given its label.

    python bench/paradigms_conditional.py ar      # bench/paradigms.py's PixelCNN, n_classes=10
    python bench/paradigms_conditional.py flow    # its spline flow, n_classes=10, 40 epochs
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pyrobn
import pyrobn.evaluation as ev

sys.path.insert(0, str(Path(__file__).parent))
from paradigms import ar_model, flow_model  # the benchmark's configurations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", choices=["ar", "flow"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    data = pyrobn.datasets.book_digits(device="cpu")
    clf = ev.train_classifier(
        data.x_train, data.y_train, data.x_val, data.y_val, levels=17, seed=0,
        x_test=data.x_test, y_test=data.y_test,
    )  # fmt: skip
    if args.model == "ar":
        model, epochs, extra = ar_model(n_classes=10), 300, {}
    else:
        model, epochs, extra = flow_model(n_classes=10), 40, {"val_samples": 4}
    started = time.perf_counter()
    model.fit(
        data.x_train, data.y_train, epochs=epochs, x_val=data.x_val, y_val=data.y_val,
        patience=25, seed=args.seed, progress=False, **extra,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    quality = ev.sample_quality(model, clf, data.x_test, n=1000, seed=args.seed)
    nll = float(model.nll(data.x_test, data.y_test, seed=args.seed).mean())
    print(
        f"{args.model} conditional: class accuracy {quality['class_accuracy']:.3f}, "
        f"FD {quality['fd']:.2f}, test NLL given y {nll:.2f} ({model.nll_kind}), "
        f"fit {seconds:.0f} s"
    )


if __name__ == "__main__":
    main()
