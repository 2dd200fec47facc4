"""backprop.sklearn.MLPClassifier vs scikit-learn's MLPClassifier: same layers, Adam, epochs and batch size.

Run:  python benchmarks/bench_sklearn.py [--write]
Each dataset is standardized, split 80/20 (stratified, seed 0); both estimators train for exactly
EPOCHS epochs (no early stopping) and are timed alternately, REPEATS times; medians are reported.
"""
import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier as SklearnMLP
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).parent))
import backprop as bp  # noqa: E402
from backprop.sklearn import MLPClassifier  # noqa: E402
from common import machine, set_threads, write_section  # noqa: E402

EPOCHS, BATCH, LAYERS, REPEATS = 30, 32, (128, 64), 3


def datasets():
    yield "digits (1,797 x 64)", load_digits(return_X_y=True)
    yield "breast cancer (569 x 30)", load_breast_cancer(return_X_y=True)
    x, y = bp.datasets.mnist_sample(split=False)
    yield "MNIST sample (5,000 x 784)", (x, y)


def contenders():
    common = {"hidden_layer_sizes": LAYERS, "batch_size": BATCH, "random_state": 0}
    return {
        "backprop": lambda: MLPClassifier(learning_rate=1e-3, max_epochs=EPOCHS, n_iter_no_change=EPOCHS, **common),
        "scikit-learn": lambda: SklearnMLP(learning_rate_init=1e-3, max_iter=EPOCHS, n_iter_no_change=EPOCHS,
                                           tol=0, alpha=1e-4, **common),
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    set_threads(2)
    lines = ["| dataset | backprop accuracy | scikit-learn accuracy | backprop fit (s) | scikit-learn fit (s) | speed-up |",
             "|---|---|---|---|---|---|"]
    for name, (x, y) in datasets():
        x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, stratify=y, random_state=0)
        scaler = StandardScaler().fit(x_train)
        x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)
        times, accuracy = {k: [] for k in contenders()}, {}
        for _ in range(REPEATS):
            for label, make in contenders().items():
                estimator = make()
                start = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    estimator.fit(x_train, y_train)
                times[label].append(time.perf_counter() - start)
                accuracy[label] = estimator.score(x_test, y_test)
        ours, theirs = statistics.median(times["backprop"]), statistics.median(times["scikit-learn"])
        lines.append(f"| {name} | {accuracy['backprop']:.3f} | {accuracy['scikit-learn']:.3f} | {ours:.2f} | "
                     f"{theirs:.2f} | {theirs / ours:.2f}x |")
        print(lines[-1], flush=True)
    if args.write:
        info = machine()
        write_section("sklearn", [f"{LAYERS} hidden units, ReLU, Adam 1e-3, batch {BATCH}, {EPOCHS} epochs, alpha 1e-4, "
                                  f"2 threads, median of {REPEATS}; {info['cpu']}; {info['versions']}.", "", *lines],
                      "scikit-learn estimators")

if __name__ == "__main__":
    main()
