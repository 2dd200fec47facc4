"""Training curves and the confusion matrix."""
import numpy

from backprop.plot.figure import new


def history(history, early_stopping=None, metrics=None):
    """Training vs validation curves for the loss and each metric; the best epoch and the stop marked.

    ``history`` is a History or its ``.history`` dict; ``early_stopping`` an EarlyStopping callback
    (or ``{"best_epoch": i, "stopped_epoch": j}``).
    """
    logs = getattr(history, "history", history)
    names = [k for k in logs if not k.startswith("val_") and k != "learning_rate"]
    if metrics is not None:
        names = [k for k in names if k in metrics or k == "loss"]
    figure, axes = new(ncols=len(names))
    best, stopped = _early_marks(early_stopping)
    for ax, name in zip(axes[0], names):
        epochs = numpy.arange(1, len(logs[name]) + 1)
        ax.plot(epochs, logs[name], label=f"training {name}", color="tab:blue")
        if f"val_{name}" in logs:
            ax.plot(epochs, logs[f"val_{name}"], label=f"validation {name}", color="tab:orange")
        if best is not None:
            ax.axvline(best + 1, color="tab:green", linestyle="--", label=f"best epoch ({best + 1})")
        if stopped:
            ax.axvline(stopped + 1, color="tab:red", linestyle=":", label=f"stopped ({stopped + 1})")
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.set_title(f"{name} per epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    figure.tight_layout()
    return figure


def _early_marks(early_stopping):
    if early_stopping is None:
        return None, None
    if isinstance(early_stopping, dict):
        return early_stopping.get("best_epoch"), early_stopping.get("stopped_epoch")
    return early_stopping.best_epoch, early_stopping.stopped_epoch


def confusion_matrix(y_true, y_pred, class_names=None, normalize=False):
    """Counts of (true class, predicted class); ``y_pred`` may be class indices or scores per class."""
    y_true = numpy.asarray(y_true).reshape(-1).astype(int)
    y_pred = numpy.asarray(y_pred)
    if y_pred.ndim == 2:
        y_pred = y_pred.argmax(axis=1) if y_pred.shape[1] > 1 else (y_pred[:, 0] > 0.5).astype(int)
    n = int(max(y_true.max(), y_pred.max()) + 1)
    counts = numpy.zeros((n, n), dtype=int)
    numpy.add.at(counts, (y_true, y_pred.astype(int)), 1)
    shown = counts / numpy.maximum(counts.sum(axis=1, keepdims=True), 1) if normalize else counts
    figure, axes = new(width=0.6 * n + 3, height=0.55 * n + 2.5)
    ax = axes[0, 0]
    image = ax.imshow(shown, cmap="Blues")
    names = class_names or [str(i) for i in range(n)]
    ax.set_xticks(range(n), names, rotation=45 if max(map(len, names)) > 3 else 0)
    ax.set_yticks(range(n), names)
    for i in range(n):
        for j in range(n):
            text = f"{shown[i, j]:.2f}" if normalize else str(counts[i, j])
            ax.text(j, i, text, ha="center", va="center", fontsize=8,
                    color="white" if shown[i, j] > shown.max() / 2 else "black")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    accuracy = numpy.trace(counts) / counts.sum()
    ax.set_title(f"confusion matrix (accuracy {accuracy:.3f})")
    figure.colorbar(image, ax=ax, fraction=0.046)
    figure.tight_layout()
    return figure
