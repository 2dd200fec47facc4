"""Backpropagation laid out: the graph a tape recorded, and the chain rule for one weight.

``computation(target, tape)`` is the recorded computation that leads to ``target``: each step's op,
value and gradient (what ``bp.plot.graph`` draws). ``chain_rule(target, source, tape)`` is the lecture's
derivation for one element of a weight: every path from the loss down to it as a product of local
derivatives with their numbers (dJ/dw1 = dJ/dy . dy/dz1 . dz1/dw1), the sum over the paths, and the
check that the sum is the tape's gradient. Local derivatives come from each op's own backward function
applied to one output element at a time, so this is for lecture-sized computations. Both need the
tape's record: use ``GradientTape(persistent=True)``, or call them before ``tape.gradient``.
"""
from dataclasses import dataclass, field

from backprop.ops import arithmetic, nn
from backprop.tape import unbroadcast
from backprop.tensor import Tensor, Variable
from backprop.xp import np


@dataclass
class Step:
    """One recorded op: its output's label, op name, inputs' labels, value and gradient."""
    label: str
    op: str
    inputs: list
    value: np.ndarray
    gradient: np.ndarray = None


@dataclass
class Computation:
    steps: list                                   # in execution order
    leaves: dict = field(default_factory=dict)    # label -> (value, gradient) of variables and inputs


def _record(tape):
    nodes = getattr(tape, "_nodes", None)
    if not nodes:
        raise ValueError("the tape holds no recorded ops: record with GradientTape(persistent=True), or call this "
                         "before tape.gradient (which frees a non-persistent tape's record)")
    return nodes


class _Labels:
    """Readable names: a variable's name, 'x' for other inputs, and the op's name numbered for results."""

    def __init__(self, names):
        self.names, self.counts, self.known = dict(names or {}), {}, {}

    def __call__(self, tensor, op=None):
        key = id(tensor)
        if key in self.known:
            return self.known[key]
        for given, label in self.names.items():
            if given is tensor:
                self.known[key] = label
                return label
        if isinstance(tensor, Variable):
            label = getattr(tensor, "path", None) or tensor.name
        else:
            stem = op or "input"
            self.counts[stem] = self.counts.get(stem, 0) + 1
            label = stem if self.counts[stem] == 1 and op is None else f"{stem}{self.counts[stem]}"
        self.known[key] = label
        return label


def _relevant(nodes, target):
    """The recorded nodes that ``target`` depends on, in execution order (a fused dense op unfolded)."""
    needed, chosen = {id(target)}, []
    for node in reversed(_unfolded(nodes)):
        result, inputs = node[0], node[1]
        if id(result) in needed:
            chosen.append(node)
            needed.update(id(x) for x in inputs if isinstance(x, Tensor))
    return chosen[::-1]


def _unfolded(nodes):
    """The nodes with each fused dense op laid out as the plain ops it stands for: x @ kernel, + bias, and the
    activation, each with its own op's backward (so a chain rule shows every local derivative)."""
    plain = []
    for node in nodes:
        result, inputs, backward, needs, op = node
        if op != "dense":
            plain.append(node)
            continue
        (x, kernel, bias), activation = inputs, getattr(backward, "activation", None)
        steps = [(arithmetic.matmul, (x, kernel), needs[:2])]
        if bias is not None:
            steps.append((arithmetic.add, (None, bias), (True, needs[2])))
        if activation not in (None, "linear"):
            steps.append((getattr(nn, activation), (None,), (True,)))
        previous = None
        for number, (plain_op, step_inputs, step_needs) in enumerate(steps):
            step_inputs = tuple(previous if t is None else t for t in step_inputs)
            out, step_backward = plain_op.forward(*(t.data for t in step_inputs))
            last = number == len(steps) - 1
            previous = result if last else Tensor._wrap(out)
            plain.append((previous, step_inputs, step_backward, step_needs, plain_op.__name__.lstrip("_")))
    return plain


def _all_gradients(nodes, target):
    """d(sum of target)/d(every tensor on the way), as the tape computes them (keyed by id)."""
    grads = {id(target): np.ones_like(target.data)}
    for result, inputs, backward, needs, _ in reversed(nodes):
        g = grads.get(id(result))
        if g is None:
            continue
        for x, needed, gx in zip(inputs, needs, backward(g, needs)):
            if needed and gx is not None:
                gx = unbroadcast(gx, x.data.shape).astype(x.data.dtype, copy=False)
                grads[id(x)] = grads[id(x)] + gx if id(x) in grads else gx
    return grads


def computation(target, tape, names=None):
    """The Computation leading to ``target``, every value with its gradient (see the module docstring)."""
    nodes = _relevant(_record(tape), target)
    grads = _all_gradients(nodes, target)
    labels, steps, leaves = _Labels(names), [], {}
    produced = {id(node[0]) for node in nodes}
    for result, inputs, _, _, op in nodes:
        input_labels = []
        for x in inputs:
            if x is None:
                continue
            if not isinstance(x, Tensor):
                input_labels.append(repr(x) if np.ndim(x) == 0 else f"const{np.shape(x)}")
                continue
            label = labels(x)
            input_labels.append(label)
            if id(x) not in produced:
                leaves.setdefault(label, (x.data, grads.get(id(x))))
        steps.append(Step(labels(result, op), op, input_labels, result.data, grads.get(id(result))))
    return Computation(steps, leaves)


@dataclass
class ChainRule:
    """The ledger of one weight element's gradient; ``str()`` prints it."""
    target: str
    source: str
    paths: list          # each a list of (upper label, lower label, local derivative)
    path_count: int
    total: float
    tape_gradient: float

    @property
    def agrees(self):
        return bool(np.isclose(self.total, self.tape_gradient, rtol=1e-6, atol=1e-9))

    def __str__(self):
        lines = [f"∂{self.target}/∂{self.source} by the chain rule: {self.path_count} path"
                 f"{'s' if self.path_count != 1 else ''} from {self.target} down to {self.source}"]
        for number, path in enumerate(self.paths, 1):
            symbols = " · ".join(f"∂{upper}/∂{lower}" for upper, lower, _ in path)
            values = " · ".join(f"({value:.4g})" for _, _, value in path)
            product = float(np.prod([value for _, _, value in path]))
            lines.append(f"  path {number}: {symbols}\n          = {values} = {product:.6g}")
        if self.path_count > len(self.paths):
            lines.append(f"  ... and {self.path_count - len(self.paths)} more paths")
        lines.append(f"  sum over the paths: {self.total:.6g}")
        lines.append(f"  the tape's gradient: {self.tape_gradient:.6g}  "
                     f"{'(they agree)' if self.agrees else '(THEY DIFFER)'}")
        return "\n".join(lines)


def _local_derivatives(node):
    """{(input position, input element): {output element: d out / d in}} from the op's own backward."""
    result, inputs, backward, needs, _ = node
    local = {}
    for j in np.ndindex(result.data.shape):
        seed = np.zeros_like(result.data)
        seed[j] = 1
        for position, (x, needed, gx) in enumerate(zip(inputs, needs, backward(seed, needs))):
            if not needed or gx is None:
                continue
            gx = unbroadcast(np.asarray(gx), x.data.shape)
            for i in zip(*np.nonzero(gx)) if gx.ndim else [()]:
                if gx[i] != 0:
                    local.setdefault((position, tuple(int(v) for v in i)), {})[j] = float(gx[i])
    return local


def chain_rule(target, source, tape, index=None, names=None, max_paths=12):
    """The ledger for d target / d source[index] (a scalar target; ``index`` defaults to the first element)."""
    if not isinstance(target, Tensor) or target.data.size != 1:
        raise ValueError("chain_rule: the target must be a scalar tensor (the loss)")
    index = tuple(np.unravel_index(0, source.shape)) if index is None else tuple(np.atleast_1d(index))
    nodes = _relevant(_record(tape), target)
    producer = {id(node[0]): node for node in nodes}
    labels = _Labels(names)
    for result, inputs, _, _, op in nodes:  # label in execution order, so names number as the code runs
        for x in inputs:
            if isinstance(x, Tensor) and id(x) not in producer:
                labels(x)
        labels(result, op)
    local_cache = {}

    def edges(tensor, element):
        """(input tensor, input element, local derivative) for one element of a produced tensor."""
        node = producer.get(id(tensor))
        if node is None:
            return []
        if id(tensor) not in local_cache:
            local_cache[id(tensor)] = _local_derivatives(node)
        inputs = node[1]
        return [(inputs[position], i, by_output[element]) for (position, i), by_output
                in local_cache[id(tensor)].items() if element in by_output]

    def name(tensor, element):
        label = labels(tensor)
        return label if tensor.data.size == 1 else f"{label}[{', '.join(map(str, element))}]"

    paths, count, memo = [], 0, {}

    def total_from(tensor, element):
        """Sum over paths from (tensor, element) down to the source element, and their number."""
        key = (id(tensor), element)
        if key not in memo:
            if tensor is source and element == index:
                memo[key] = (1.0, 1)
            else:
                value, number = 0.0, 0
                for x, i, d in edges(tensor, element):
                    below, n = total_from(x, i)
                    value, number = value + d * below, number + n
                memo[key] = (value, number)
        return memo[key]

    def walk(tensor, element, trail):
        if len(paths) >= max_paths:
            return
        if tensor is source and element == index:
            paths.append(list(trail))
            return
        for x, i, d in edges(tensor, element):
            if total_from(x, i)[1]:
                walk(x, i, trail + [(name(tensor, element), name(x, i), d)])

    top = tuple(0 for _ in target.shape)
    total, count = total_from(target, top)
    walk(target, top, [])
    gradient = _all_gradients(nodes, target).get(id(source))
    tape_value = float(gradient[index]) if gradient is not None else 0.0
    return ChainRule(labels(target), name(source, index), paths, count, total, tape_value)
