"""The lecture's pictures: activations, loss landscapes, learning rates, optimizers, under/overfitting."""
import numpy

from backprop import activations as activations_module
from backprop import landscape, optimizers as optimizers_module
from backprop.plot.figure import new
from backprop.tape import GradientTape
from backprop.tensor import Tensor

COLORS = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink"]


def activation_functions(names=("sigmoid", "tanh", "relu"), limits=(-5, 5)):
    """Each activation (top row) and its derivative computed by the tape (bottom row)."""
    x = Tensor(numpy.linspace(*limits, 401))
    figure, axes = new(ncols=len(names), nrows=2, width=3.6, height=3.0)
    for column, name in enumerate(names):
        fn = activations_module.get(name)
        with GradientTape() as tape:
            tape.watch(x)
            y = fn(x)
        dy = tape.gradient(y, x)
        top, bottom = axes[0, column], axes[1, column]
        top.plot(x.numpy(), y.numpy(), color=COLORS[column % len(COLORS)], linewidth=2)
        bottom.plot(x.numpy(), dy.numpy(), color=COLORS[column % len(COLORS)], linestyle="--", linewidth=2)
        top.set_title(f"{name}(z)")
        bottom.set_title(f"{name}'(z)")
        for ax in (top, bottom):
            ax.axhline(0, color="gray", linewidth=0.5)
            ax.axvline(0, color="gray", linewidth=0.5)
            ax.grid(alpha=0.3)
            ax.set_xlabel("z")
    figure.tight_layout()
    return figure


def loss_landscape(loss_fn, w_range, path=None, paths=None, resolution=120, log_scale=False, title="loss landscape"):
    """The loss over two weights as a contour map (left) and a 3-D surface (right), with optimizer
    paths drawn on both. ``path`` is one (steps, 2) array; ``paths`` a {label: array} dict."""
    w1, w2, values = landscape.grid(loss_fn, w_range, resolution)
    paths = dict(paths or {})
    if path is not None:
        paths["path"] = path
    drawn = {label: (numpy.asarray(points), [float(loss_fn(Tensor(p)).numpy()) for p in numpy.asarray(points)])
             for label, points in paths.items()}
    figure, flat = _surface_figure(w1, w2, values, drawn, ("w1", "w2"), title, log_scale)
    (a0, a1), (b0, b1) = w_range
    flat.set_xlim(a0, a1)
    flat.set_ylim(b0, b1)
    return figure


def network_landscape(model, x, y, trajectory=None, resolution=31, span=1.0, log_scale=False, seed=0):
    """A trained network's loss on a plane through its weights (backprop.landscape.network_surface):
    contour and surface, with the training trajectory projected on them when one is given."""
    surface = landscape.network_surface(model, x, y, resolution, span, trajectory, seed)
    a, b = numpy.meshgrid(surface.alphas, surface.betas)
    paths = {} if surface.path is None else {"training": (surface.path, surface.path_losses)}
    axes = ("direction 1 (filter-normalised)", "direction 2") if surface.path is None else ("PC 1", "PC 2")
    title = "loss around the trained weights" + (", with the training path" if paths else "")
    return _surface_figure(a, b, surface.losses, paths, axes, title, log_scale)[0]


def _surface_figure(w1, w2, values, paths, axis_labels, title, log_scale):
    """Contour (left) and 3-D surface (right) of ``values``; ``paths`` {label: (points, heights)}."""
    figure = new(width=12, height=5)[0]
    figure.clear()
    flat = figure.add_subplot(1, 2, 1)
    shown = numpy.log10(values - numpy.nanmin(values) + 1e-3) if log_scale else values
    contour = flat.contourf(w1, w2, shown, levels=30, cmap="viridis")
    figure.colorbar(contour, ax=flat, label="log10(loss - min)" if log_scale else "loss")
    surface = figure.add_subplot(1, 2, 2, projection="3d")
    surface.plot_surface(w1, w2, values, cmap="viridis", alpha=0.75, linewidth=0)
    for color, (label, (points, heights)) in zip(COLORS[1:] + COLORS[:1], paths.items()):
        flat.plot(points[:, 0], points[:, 1], "o-", color=color, markersize=2.5, linewidth=1.2, label=label)
        surface.plot(points[:, 0], points[:, 1], heights, color=color, linewidth=2)
    if paths:
        start = next(iter(paths.values()))[0][0]
        flat.scatter([start[0]], [start[1]], color="white", edgecolors="black", s=60, zorder=5, label="start")
        flat.legend(fontsize=8, loc="upper right")
    for ax in (flat, surface):
        ax.set_xlabel(axis_labels[0])
        ax.set_ylabel(axis_labels[1])
    surface.set_zlabel("loss")
    flat.set_title(title)
    surface.set_title("the same surface in 3-D")
    figure.tight_layout()
    return figure, flat


def learning_rates(loss_fn=landscape.bowl, rates=(0.01, 0.15, 0.205), start=(-4.0, 1.5), steps=60,
                   w_range=((-5, 5), (-3, 3)), labels=("too small", "good", "too large")):
    """Gradient descent with each learning rate from the same start: loss curves and paths."""
    runs = {f"lr={rate:g} ({label})": landscape.path(optimizers_module.SGD(rate), loss_fn, start, steps)
            for rate, label in zip(rates, labels)}
    figure, axes = new(ncols=2, width=6, height=4.6)
    curves, paths_ax = axes[0]
    _loss_curves(curves, runs, "loss per gradient-descent step")
    w1, w2, values = landscape.grid(loss_fn, w_range)
    paths_ax.contour(w1, w2, values, levels=25, cmap="viridis", linewidths=0.8)
    for color, (label, (points, _)) in zip(COLORS, runs.items()):
        paths_ax.plot(points[:, 0], points[:, 1], "o-", color=color, markersize=2.5, linewidth=1, label=label)
    paths_ax.scatter([start[0]], [start[1]], color="white", edgecolors="black", s=60, zorder=5)
    (a0, a1), (b0, b1) = w_range
    paths_ax.set_xlim(a0, a1)
    paths_ax.set_ylim(b0, b1)
    paths_ax.set_xlabel("w1")
    paths_ax.set_ylabel("w2")
    paths_ax.set_title("paths across the loss surface")
    figure.tight_layout()
    return figure, runs


DEFAULT_OPTIMIZERS = {
    "SGD": lambda: optimizers_module.SGD(0.01),
    "momentum": lambda: optimizers_module.SGD(0.01, momentum=0.9),
    "Adagrad": lambda: optimizers_module.Adagrad(0.5),
    "RMSprop": lambda: optimizers_module.RMSprop(0.05),
    "Adadelta": lambda: optimizers_module.Adadelta(10.0),
    "Adam": lambda: optimizers_module.Adam(0.1),
}


def optimizers(loss_fn=landscape.himmelblau, start=(-0.3, -0.9), steps=150, factories=None,
               w_range=((-5.5, 5.5), (-5.5, 5.5))):
    """SGD, momentum, Adagrad, RMSprop, Adadelta and Adam racing across one non-convex surface."""
    factories = factories or DEFAULT_OPTIMIZERS
    runs = {name: landscape.path(make(), loss_fn, start, steps) for name, make in factories.items()}
    figure, axes = new(ncols=2, width=6.2, height=5)
    surface_ax, curves = axes[0]
    w1, w2, values = landscape.grid(loss_fn, w_range)
    surface_ax.contourf(w1, w2, numpy.log10(values + 1e-3), levels=30, cmap="Greys")
    for color, (name, (points, _)) in zip(COLORS, runs.items()):
        surface_ax.plot(points[:, 0], points[:, 1], "-", color=color, linewidth=1.8, label=name)
        surface_ax.scatter(points[-1:, 0], points[-1:, 1], color=color, edgecolors="black", s=40, zorder=5)
    surface_ax.scatter([start[0]], [start[1]], color="white", edgecolors="black", s=70, zorder=6, label="start")
    surface_ax.set_title("paths on Himmelblau's function (shade: log loss)")
    surface_ax.set_xlabel("w1")
    surface_ax.set_ylabel("w2")
    surface_ax.legend(fontsize=8, loc="upper left")
    _loss_curves(curves, runs, "loss per step")
    figure.tight_layout()
    return figure, runs


def _loss_curves(ax, runs, title):
    """One log-scale loss curve per run ({label: (positions, losses)})."""
    for color, (label, (_, losses)) in zip(COLORS, runs.items()):
        ax.plot(numpy.arange(1, len(losses) + 1), losses, color=color, label=label)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (log scale)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def fits(x, y, models, x_plot=None, titles=None):
    """One 1-D regression problem fitted by models of growing capacity: under-, good and overfitting.

    ``models`` maps a title to a fitted model (anything with ``predict``); ``x``/``y`` are the
    training points, shown on every panel."""
    x, y = numpy.asarray(x).reshape(-1, 1), numpy.asarray(y).reshape(-1)
    x_plot = numpy.linspace(x.min(), x.max(), 400).reshape(-1, 1).astype(numpy.float32) if x_plot is None else x_plot
    figure, axes = new(ncols=len(models), width=4.2, height=3.6)
    for ax, (title, model) in zip(axes[0], models.items()):
        ax.scatter(x[:, 0], y, color="black", s=18, zorder=3, label="training points")
        ax.plot(x_plot[:, 0], numpy.asarray(model.predict(x_plot)).reshape(-1), color="tab:red", linewidth=2,
                label="model")
        ax.set_title(title)
        ax.set_xlabel("x")
        ax.set_ylim(y.min() - 1, y.max() + 1)
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("y")
    axes[0, 0].legend(fontsize=8)
    figure.tight_layout()
    return figure
