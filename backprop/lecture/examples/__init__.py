"""One runnable script per section of the lecture; the report shows each script's ``run`` function.

Run one directly: ``python -m backprop.lecture.examples.s01_perceptron`` (or ``python examples/s01_perceptron.py``).
"""
SECTIONS = ["s01_perceptron", "s02_activations", "s03_dense_by_hand", "s04_pass_fail", "s05_losses",
            "s06_gradient_descent", "s07_learning_rates", "s08_optimizers", "s09_minibatches", "s10_overfitting",
            "s11_backpropagation", "s12_network_landscape", "s13_learning_rate_finder"]


def show(result):
    """Print a section's numbers one per line (what ``python examples/sNN_....py`` shows)."""
    for name, value in result.items():
        if name != "figures":
            print(f"{name}: {value:.6g}" if isinstance(value, float) else f"{name}: {value}")
    print(f"figures written: {', '.join(result.get('figures', [])) or 'none'}")
