"""What a model does in a 2-D feature space: decision boundaries and the single perceptron."""
import numpy

from backprop.plot.figure import new


def _grid(x, resolution, margin=0.5):
    low, high = x.min(axis=0) - margin, x.max(axis=0) + margin
    xs, ys = numpy.linspace(low[0], high[0], resolution), numpy.linspace(low[1], high[1], resolution)
    gx, gy = numpy.meshgrid(xs, ys)
    return gx, gy, numpy.stack([gx.ravel(), gy.ravel()], axis=1).astype(numpy.float32)


def decision_boundary(model, x, y, resolution=200, transform=None, feature_names=("x1", "x2"), title=None,
                      ax=None):
    """Feature space coloured by the model's output, the 0.5 contour (binary), the data points.

    ``model`` is anything with ``predict`` or a callable returning probabilities or logits;
    ``transform`` maps raw features to the model's inputs (e.g. a fitted Scaler's transform).
    For several classes the colour is the predicted class.
    """
    x, y = numpy.asarray(x, dtype=float), numpy.asarray(y).reshape(-1)
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"decision_boundary needs 2 input features, got shape {x.shape}")
    gx, gy, points = _grid(x, resolution, margin=0.1 * (x.max() - x.min()) + 1e-3)
    inputs = transform(points) if transform is not None else points
    scores = model.predict(inputs) if hasattr(model, "predict") else numpy.asarray(model(inputs))
    scores = numpy.asarray(scores)
    if ax is None:
        figure, axes = new()
        ax = axes[0, 0]
    figure = ax.figure
    if scores.ndim == 1 or scores.shape[1] == 1:
        p = scores.reshape(-1)
        if p.min() < 0 or p.max() > 1:  # logits
            p = 1 / (1 + numpy.exp(-numpy.clip(p, -60, 60)))
        p = p.reshape(gx.shape)
        filled = ax.contourf(gx, gy, p, levels=numpy.linspace(0, 1, 11), cmap="RdBu_r", alpha=0.7)
        ax.contour(gx, gy, p, levels=[0.5], colors="black", linewidths=1.5)
        figure.colorbar(filled, ax=ax, label="P(class 1)")
    else:
        classes = scores.argmax(axis=1).reshape(gx.shape)
        ax.contourf(gx, gy, classes, levels=numpy.arange(scores.shape[1] + 1) - 0.5, cmap="tab10", alpha=0.35)
    scatter = ax.scatter(x[:, 0], x[:, 1], c=y, cmap="RdBu_r" if len(numpy.unique(y)) <= 2 else "tab10",
                         edgecolors="black", linewidths=0.5, s=22)
    ax.legend(*scatter.legend_elements(), title="class", loc="best", fontsize=8)
    ax.set_xlabel(feature_names[0])
    ax.set_ylabel(feature_names[1])
    ax.set_title(title or "decision boundary")
    return figure


def perceptron(w0, w, point=None, limits=(-4, 4)):
    """The single neuron y = sigmoid(w0 + w . x): its line z = 0, the two half-planes, a query point."""
    w = numpy.asarray(w, dtype=float).reshape(-1)
    figure, axes = new(width=6, height=5)
    ax = axes[0, 0]
    gx, gy = numpy.meshgrid(numpy.linspace(*limits, 300), numpy.linspace(*limits, 300))
    z = w0 + w[0] * gx + w[1] * gy
    filled = ax.contourf(gx, gy, 1 / (1 + numpy.exp(-numpy.clip(z, -60, 60))), levels=numpy.linspace(0, 1, 11),
                         cmap="RdBu_r", alpha=0.6)
    ax.contour(gx, gy, z, levels=[0], colors="black", linewidths=2)
    figure.colorbar(filled, ax=ax, label="y = sigmoid(z)")
    terms = f"{w0:g}" + "".join(f" {'-' if c < 0 else '+'} {abs(c):g}·x{i + 1}" for i, c in enumerate(w))
    ax.text(0.02, 0.97, f"boundary: z = {terms} = 0", transform=ax.transAxes, va="top",
            bbox={"facecolor": "white", "alpha": 0.85})
    low, high = limits
    corners = [(x, y) for x in (low, high) for y in (low, high)]
    for sign, color in ((1, "darkred"), (-1, "navy")):  # label each half-plane at its deepest corner
        cx, cy = max(corners, key=lambda c: sign * (w0 + w[0] * c[0] + w[1] * c[1]))
        inset = 0.04 * (high - low)
        ty = cy - inset - (0.1 * (high - low) if (cx, cy) == (low, high) else 0) if cy == high else cy + inset
        ax.text(cx + inset if cx == low else cx - inset, ty, "z > 0: y > 0.5" if sign > 0 else "z < 0: y < 0.5",
                color=color, ha="left" if cx == low else "right", va="top" if cy == high else "bottom",
                bbox={"facecolor": "white", "alpha": 0.7, "edgecolor": "none"})
    if point is not None:
        px, py = point
        zp = w0 + w[0] * px + w[1] * py
        yp = 1 / (1 + numpy.exp(-zp))
        ax.scatter([px], [py], color="gold", edgecolors="black", s=120, zorder=3)
        ax.annotate(f"x = ({px:g}, {py:g})\nz = {zp:g}\ny = {yp:.5f}", (px, py), xytext=(12, -30),
                    textcoords="offset points", bbox={"facecolor": "white", "alpha": 0.9})
    ax.set_xlim(*limits)
    ax.set_ylim(*limits)
    ax.set_xlabel("x1")
    ax.set_ylabel("x2")
    ax.set_title("a perceptron's decision boundary")
    return figure
