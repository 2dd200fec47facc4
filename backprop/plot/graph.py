"""The computational graph a tape recorded, as micrograd's draw_dot shows it, for tensors too: one box
per value (its op, its value or shape, and its gradient), arrows from each op's inputs to its output."""
from backprop import explain
from backprop.plot import figure as figures
from backprop.xp import np


def _describe(values):
    values = np.asarray(values)
    if values.size == 1:
        return f"{float(values.reshape(())):.4g}"
    return f"{values.shape}, |·| {float(np.linalg.norm(values)):.3g}"


def _depths(computation):
    """Each label's column: a result one past its deepest input, a leaf just before its first use."""
    depth = {}
    for step in computation.steps:
        depth[step.label] = 1 + max((depth.get(label, 0) for label in step.inputs), default=0)
    for step in computation.steps:
        for label in step.inputs:
            if label in computation.leaves:
                depth[label] = min(depth.get(label, depth[step.label] - 1), depth[step.label] - 1)
    return depth


def graph(target, tape, names=None, title="computational graph"):
    """The recorded computation leading to ``target`` (see backprop.explain); needs the tape's record
    (``GradientTape(persistent=True)``, or draw before ``tape.gradient``)."""
    computation = explain.computation(target, tape, names)
    boxes = {label: ("leaf", value, grad) for label, (value, grad) in computation.leaves.items()}
    boxes.update({step.label: (step.op, step.value, step.gradient) for step in computation.steps})
    depth = _depths(computation)
    columns = {}
    for label in boxes:
        columns.setdefault(depth.get(label, 0), []).append(label)
    width, height = max(columns) + 1, max(len(c) for c in columns.values())
    fig, axes = figures.new(width=2.0 * width + 1, height=1.6 * height + 1)  # read at a page's width: big text
    ax = axes[0, 0]
    position = {label: (column, (len(labels) - 1) / 2 - row) for column, labels in columns.items()
                for row, label in enumerate(labels)}
    boxes_drawn = {}
    for label, (kind, value, grad) in boxes.items():
        x, y = position[label]
        gradient = "grad —" if grad is None else f"grad {_describe(grad)}"
        leaf = label in computation.leaves
        boxes_drawn[label] = ax.text(
            x, y, f"{label}" + ("" if leaf else f"\n= {kind}(…)") + f"\n{_describe(value)}\n{gradient}",
            ha="center", va="center", fontsize=11, family="monospace",
            bbox={"boxstyle": "round", "facecolor": "#e8f0fb" if leaf else "#fdf1e3", "edgecolor": "0.4"})
    for step in computation.steps:
        for label in step.inputs:
            if label in position:  # the arrow is clipped at both boxes' edges, so its head shows
                ax.annotate("", xy=position[step.label], xytext=position[label],
                            arrowprops={"arrowstyle": "-|>", "mutation_scale": 14, "color": "0.5", "shrinkA": 1,
                                        "shrinkB": 1, "patchA": boxes_drawn[label].get_bbox_patch(),
                                        "patchB": boxes_drawn[step.label].get_bbox_patch()})
    ax.set_xlim(-0.7, width - 0.3)
    ax.set_ylim(-height / 2 - 0.2, height / 2 + 0.2)
    ax.axis("off")
    ax.set_title(f"{title}: inputs and weights in blue; each box shows its value and its gradient")
    return fig
