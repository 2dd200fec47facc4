"""Join chains of elementwise ops in a recorded graph into one op each, with one generated loop forward and
one backward (item 4 of the compiler: fewer passes over memory, fewer calls per step).

``fused(graph)`` returns a graph in which each group of elementwise nodes (ops that declare a ``formula``,
backprop.ops.formula) whose values are used only inside the group is one node, together with the sum or mean
that reduces the group's result, when one does (the reduction is NumPy's own, on the joined values). Its
forward and backward are formulas generated from the members' own, run by backprop.elementwise: numba's one
pass for large host arrays (the ``fast`` extra), otherwise the same ufunc calls the ops make, on preallocated
buffers; on a device, on its arrays (one CUDA kernel per formula on a GPU, where the formula has an exact CUDA
form). A group is formed only where its replay computes the bits the ops compute one by one on the NumPy
engine: one dtype, members of one shape, every gradient added up in the order the tape adds it. Which groups
are joined is a ``Policy``: by default, only where it measurably pays.
"""
import contextlib
import contextvars
import dataclasses
import math
import os

from backprop import devices, elementwise
from backprop.ops import formula as symbols
from backprop.tape import reverse
from backprop.tracing import Graph, Node, Source
from backprop.xp import np

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_GRAD = symbols.Symbol("grad")
_LEAVES = ("outside", "constant", "grad")
_QUIET = {"log", "sqrt"}  # ops that compute under np.errstate(divide/invalid ignored), as their eager forms do
# NumPy runs these with SIMD routines; numba calls the C library once per element, which measured slower (a tanh
# group 6x, a sigmoid group 1.2x on 512k floats), so groups that use them stay on the NumPy engine.
_VECTORIZED_BY_NUMPY = {"exp", "log", "logaddexp", "tanh", "sin", "cos"}
# A sum or mean of a group's result joins the group: its forward is the op's own NumPy reduction of the joined
# values (the same pairwise sums, so the same bits), and its gradient goes into the group's backward formula as
# a broadcast view (a number for a whole reduction: nothing the size of the group is written for it).
_REDUCTIONS = {"sum", "mean"}


@dataclasses.dataclass(frozen=True)
class Policy:
    """Which groups a replay joins. By default only where it measurably pays: arithmetic groups of 65,536
    values or more, run by numba as one loop (1.3-1.55x a step with such a group, bench_fusion.py). Smaller
    groups cost more in bookkeeping than they save, and groups using NumPy's SIMD functions (exp, log, tanh,
    the sigmoid) measured 0.88-2.9x on the NumPy engine depending on the allocator's state, so they stay op by
    op. ``EVERYTHING`` joins every group (the tests check the mechanism with it)."""
    smallest: int = 65_536                # values in the group's result
    ops: frozenset = frozenset({"add", "subtract", "multiply", "divide", "negative", "square", "sqrt", "sum", "mean"})
    needs_numba: bool = True              # join only when numba is there to run the group

    def allows(self, node):
        return math.prod(node.shape) >= self.smallest and (self.ops is None or node.op in self.ops)


EVERYTHING = Policy(smallest=0, ops=None, needs_numba=False)
_policy = contextvars.ContextVar("backprop_fusion_policy", default=Policy())


@contextlib.contextmanager
def using(policy):
    """Plans made inside the block join what ``policy`` allows."""
    token = _policy.set(policy)
    try:
        yield
    finally:
        _policy.reset(token)


def enabled():
    return os.environ.get("BACKPROP_FUSE", "1") != "0"


def fused(graph):
    """``graph`` with its elementwise groups joined (the same graph when there is none)."""
    policy = _policy.get()
    if policy.needs_numba and elementwise.numba_module() is None:
        return graph
    groups = _groups(graph, policy)
    if not groups:
        return graph
    return _rewritten(graph, groups)


# --- finding the groups ------------------------------------------------------------------------------------
def _formula(node):
    return getattr(node.forward, "formula", None)


def _consumers(graph):
    """For each node index and each other source key: the positions of the nodes that read it."""
    readers = {}
    for position, node in enumerate(graph.nodes):
        for source in node.inputs:
            if source is not None:
                readers.setdefault(_key(source), []).append(position)
    for source in graph.outputs:
        readers.setdefault(_key(source), []).append(len(graph.nodes))  # read after the last node
    return readers


def _key(source):
    return source.key() or ("value", id(source))


def _needs(node):
    """The one needs tuple of every tape that kept ``node`` (None when none did); False when tapes differ."""
    kinds = {needs for _, needs in node.tapes}
    if not kinds:
        return None
    return kinds.pop() if len(kinds) == 1 else False


def _joinable(graph, node):
    """An elementwise node whose inputs all share its float dtype (Python numbers are weak, as in NumPy)."""
    if _formula(node) is None or node.effect or node.params or np.dtype(node.dtype) not in _FLOATS:
        return False
    if _needs(node) is False:
        return False
    for source in node.inputs:
        if source is None:
            return False
        if source.kind == "constant" and source.index is None:
            value = source.value
            if type(value) not in (int, float) and not (hasattr(value, "dtype") and value.dtype == node.dtype):
                return False
        elif _dtype(graph, source) != node.dtype:
            return False
    return True


def _dtype(graph, source):
    if source.kind == "node":
        return graph.nodes[source.index].dtype
    if source.kind == "input":
        return graph.inputs[source.index][1]
    return getattr(source.value, "dtype", None) if source.kind == "constant" else source.value.data.dtype


def _groups(graph, policy):
    """Lists of node positions (in order, the root last: the elementwise root, or the sum or mean of its value),
    each group of two or more members."""
    readers = _consumers(graph)
    joinable = [_joinable(graph, node) and policy.allows(node) for node in graph.nodes]
    taken, groups = set(), []
    for root in range(len(graph.nodes) - 1, -1, -1):
        if root in taken:
            continue
        reduced = _reduced(graph, root, joinable, readers, policy)
        start = root if reduced is None else reduced
        if not joinable[start] or start in taken:
            continue
        members = _grow(graph, start, joinable, readers, taken) | {root}
        if len(members) > 1 and _exact(graph, members, readers, graph.nodes[start].shape):
            groups.append(sorted(members))
            taken.update(members)
    return sorted(groups)


def _reduced(graph, position, joinable, readers, policy):
    """The position of the joinable node whose value the node at ``position`` sums or averages, when that node is
    a sum or mean the group can end with (its value read by the reduction alone, kept by the same tapes)."""
    node = graph.nodes[position]
    if node.op not in _REDUCTIONS or node.forward is None or node.effect or len(node.inputs) != 1:
        return None
    if (policy.ops is not None and node.op not in policy.ops) or not set(node.params) <= {"axis", "keepdims"}:
        return None
    (source,) = node.inputs
    if source is None or source.kind != "node" or not joinable[source.index] or _needs(node) is False:
        return None
    reduced = graph.nodes[source.index]
    if reduced.dtype != node.dtype or readers[("node", source.index)] != [position]:
        return None
    if {number for number, _ in reduced.tapes} != {number for number, _ in node.tapes}:
        return None
    return source.index


def _grow(graph, root, joinable, readers, taken):
    """The root and every earlier joinable node of its shape whose value only the group reads."""
    members, root_node = {root}, graph.nodes[root]
    tapes = {number for number, _ in root_node.tapes}
    changed = True
    while changed:
        changed = False
        for member in list(members):
            for source in graph.nodes[member].inputs:
                j = source.index if source.kind == "node" else None
                if j is None or j in members or j in taken or not joinable[j]:
                    continue
                node = graph.nodes[j]
                kept_by = {number for number, _ in node.tapes}
                if node.shape != root_node.shape or (kept_by and kept_by != tapes):
                    continue
                if all(reader in members for reader in readers[("node", j)]):
                    members.add(j)
                    changed = True
    return members


def _exact(graph, members, readers, shape):
    """Whether the joined gradients add up exactly as the tape adds them. The joined node adds the group's share
    of an outside input's gradient at the root's place, in one sum. So an outside input read once inside the
    group may not be read by a node outside it between that read and the root (the tape would add that node's
    share in between); one read twice or more inside has the group's shape (no sum over broadcast rows in
    between) and is read by no differentiated node outside the group after its first read inside (the tape would
    add the group's shares one by one onto that node's). ``shape``: the elementwise members' one shape."""
    root = max(members)
    first_use, count = {}, {}
    for position in sorted(members):
        for source in graph.nodes[position].inputs:
            if source.kind == "node" and source.index in members:
                continue
            key = _key(source)
            first_use.setdefault(key, position)
            count[key] = count.get(key, 0) + 1
    for key, first in first_use.items():
        if key[0] == "value":
            continue
        if count[key] > 1 and _shape(graph, key) != shape:
            return False
        last = len(graph.nodes) if count[key] > 1 else root
        if any(first < reader < last and reader not in members and graph.nodes[reader].tapes
               for reader in readers.get(key, ())):
            return False
    return True


def _shape(graph, key):
    kind, index = key
    if kind == "node":
        return graph.nodes[index].shape
    if kind == "input":
        return graph.inputs[index][0]
    return None  # a variable or a constant tensor: treated as possibly broadcast


# --- rewriting the graph -----------------------------------------------------------------------------------
def _rewritten(graph, groups):
    """A new graph: each group's root replaced by its joined node, the other members gone, sources renumbered."""
    member_of = {position: group for group in groups for position in group}
    new_index, nodes = {}, []
    for position, node in enumerate(graph.nodes):
        group = member_of.get(position)
        if group is not None and position != group[-1]:
            continue
        new_index[position] = len(nodes)
        nodes.append(node if group is None else _joined(graph, group))
    renumbered = Graph(list(graph.inputs), outputs=[_renumbered(s, new_index) for s in graph.outputs])
    for node in nodes:
        copy = Node(node.op, [_renumbered(s, new_index) for s in node.inputs], node.params, node.shape, node.dtype,
                    node.layer, node.forward, node.effect, node.tapes)
        renumbered.nodes.append(copy)
    return renumbered


def _renumbered(source, new_index):
    if source is None or source.kind != "node":
        return source
    return Source("node", new_index[source.index])


def _joined(graph, group):
    """One node standing for the group: its inputs are the values the group reads from outside."""
    last = graph.nodes[group[-1]]
    reduction = last if last.op in _REDUCTIONS and _formula(last) is None else None
    result = last
    if reduction is not None:
        group = group[:-1]
        last = graph.nodes[group[-1]]
    outside, slot_of = [], {}
    for position in group:
        for source in graph.nodes[position].inputs:
            if source.kind == "node" and source.index in group:
                continue
            key = _key(source)
            if key not in slot_of:
                slot_of[key] = len(outside)
                outside.append(source)
    members = [graph.nodes[position] for position in group]
    wiring = [[("member", group.index(s.index)) if s.kind == "node" and s.index in group else ("outside", slot_of[_key(s)])
               for s in node.inputs] for node in members]
    needs = _outside_needs(wiring, [_needs(node) for node in members], len(outside))
    tapes = tuple((number, needs) for number, _ in result.tapes)
    forward = Joined(members, wiring, outside, last.shape, last.dtype, needs, reduction)
    name = "+".join(node.op for node in members + ([reduction] if reduction else []))
    return Node(name, outside, {}, result.shape, result.dtype, result.layer, forward, tapes=tapes)


def _outside_needs(wiring, needs, count):
    wanted = [False] * count
    for inputs, member_needs in zip(wiring, needs):
        for (kind, index), need in zip(inputs, member_needs or ()):
            if kind == "outside" and need:
                wanted[index] = True
    return tuple(wanted)


class Joined:
    """The forward function of a joined group: ``(*outside values) -> (out, backward)``. The forward formula also
    writes the values the backward formula reads (a sigmoid's output, say), so nothing is computed twice.
    ``reduction``: the sum or mean node ending the group, run by its own forward function on the joined values."""

    def __init__(self, members, wiring, outside, shape, dtype, needs, reduction=None):
        self.members, self.wiring, self.shape, self.dtype = members, wiring, shape, np.dtype(dtype)
        self.reduction = reduction
        self.member_needs = [_needs(node) for node in members]
        self.quiet = any(node.op in _QUIET for node in members)
        numbers = [s.kind == "constant" and s.index is None and type(s.value) in (int, float) for s in outside]
        self.arrays = [index for index, number in enumerate(numbers) if not number]
        self.leaves = [symbols.constant(s.value) if number else symbols.Symbol("outside", (index,))
                       for index, (s, number) in enumerate(zip(outside, numbers))]
        self.values = self._values()
        gradients = [g for (kind, _), g in self._adjoints(needs).items() if kind == "outside"]
        self.saved = _forward_values_read(gradients, self.values[-1])
        self.forward_formula = self._compiled([self.values[-1], *self.saved], "forward")
        self._backwards = {}  # needs -> (formula, for each outside value the result holding its gradient or None)

    def compile_seconds(self):
        return sum(f.compile_seconds for f in [self.forward_formula, *(f for f, _ in self._backwards.values())])

    def _values(self):
        values = []
        for node, inputs in zip(self.members, self.wiring):
            args = [values[i] if kind == "member" else self.leaves[i] for kind, i in inputs]
            values.append(node.forward.formula[0](*args))
        return values

    def __call__(self, *outside):
        xp = _array_module(outside)
        if xp is None:
            return self._one_by_one(outside)
        results = [xp.empty(self.shape, self.dtype) for _ in range(self.forward_formula.results)]
        self._run(self.forward_formula, results, outside)
        if self.reduction is None:
            return results[0], lambda g, needs: self._backward(g, needs, outside, results)
        out, reduction_backward = self.reduction.forward(results[0], **self.reduction.params)
        return out, lambda g, needs: self._backward(reduction_backward(g, (True,))[0], needs, outside, results)

    def _backward(self, g, needs, outside, forward_results):
        formula, result_of = self._backward_for(needs)
        xp = devices.array_module(forward_results[0])
        results = [xp.empty(self.shape, self.dtype) for _ in range(formula.results)]
        self._run(formula, results, outside, [g, *forward_results])
        return [None if r is None else results[r] for r in result_of]

    def _run(self, formula, results, outside, more=()):
        arguments = [*results, *[outside[i] for i in self.arrays], *more, *formula.constants]
        if not self.shape:  # the engines take 0-d arrays for numbers: a group of scalars runs on arrays of one
            arguments = [a.reshape(1) if type(a) is np.ndarray else a for a in arguments]
        elif formula.numba and results[0].size >= elementwise.NUMBA_FROM:
            arguments = _for_numba(arguments, self.shape)
        if self.quiet:
            with np.errstate(divide="ignore", invalid="ignore"):
                formula(*arguments)
        else:
            formula(*arguments)

    def _backward_for(self, needs):
        needs = tuple(needs)
        if needs not in self._backwards:
            adjoint = self._adjoints(needs)
            wanted = [adjoint.get(("outside", i)) if need else None for i, need in enumerate(needs)]
            distinct = list({id(s): s for s in wanted if s is not None}.values())  # add's (g, g): one array
            where = {id(s): position for position, s in enumerate(distinct)}
            forward_given = [self.values[-1], *self.saved]
            formula = self._compiled(distinct, "backward", [_GRAD, *forward_given])
            self._backwards[needs] = formula, [None if s is None else where[id(s)] for s in wanted]
        return self._backwards[needs]

    def _adjoints(self, needs):
        """The members' gradient formulas chained in the tape's order (the same additions, in the same order),
        for the outside values ``needs`` asks: {("outside", i) or ("member", i): symbol}."""
        adjoint = {("member", len(self.members) - 1): _GRAD}
        for position in range(len(self.members) - 1, -1, -1):
            member_needs, upstream = self.member_needs[position], adjoint.get(("member", position))
            if member_needs is None or upstream is None:
                continue
            inputs = self.wiring[position]
            args = [self.values[i] if kind == "member" else self.leaves[i] for kind, i in inputs]
            grads = self.members[position].forward.formula[1](upstream, self.values[position], *args)
            for (kind, index), need, grad in zip(inputs, member_needs, grads):
                if not need or (kind == "outside" and not needs[index]):
                    continue
                key = (kind, index)
                adjoint[key] = grad if key not in adjoint else adjoint[key] + grad
        return adjoint

    def _compiled(self, results, kind, given=()):
        parameters = [(self.leaves[i], f"x{i}") for i in self.arrays]
        parameters += [(symbol, f"s{k}") for k, symbol in enumerate(given)]
        source, constants = _source(results, parameters)
        namespace = {"np": np}
        exec(compile(source, f"<joined {kind} of {'+'.join(node.op for node in self.members)}>", "exec"), namespace)
        function = namespace["joined"]
        function.source = source  # the disk cache keeps numba's loop by this text (backprop.elementwise)
        compiled = elementwise.Elementwise(function, [f"r{i}" for i in range(len(results))])
        compiled.constants = [self.dtype.type(c) for c in constants]  # NumPy's weak numbers: the arrays' precision
        compiled.results = len(results)
        compiled.numba = not _uses(results, _VECTORIZED_BY_NUMPY)
        return compiled

    def _one_by_one(self, outside):
        """The members' own forward functions in order (a device's arrays), and their backward through the tape's
        reverse loop."""
        members, wiring, member_needs = self.members, self.wiring, self.member_needs
        if self.reduction is not None:
            members = members + [self.reduction]
            wiring = wiring + [[("member", len(self.members) - 1)]]
            member_needs = member_needs + [(True,)]
        values, backwards = [], []
        for node, inputs in zip(members, wiring):
            args = [values[i] if kind == "member" else outside[i] for kind, i in inputs]
            out, backward = node.forward(*args, **node.params)
            values.append(out)
            backwards.append(backward)

        def backward(g, needs):
            slots = list(outside) + values
            grads = {len(outside) + len(values) - 1: g}
            nodes = [(len(outside) + position, [len(outside) + i if kind == "member" else i for kind, i in inputs],
                      backwards[position], member_needs[position] or (False,) * len(inputs), node.op)
                     for position, (node, inputs) in enumerate(zip(members, wiring))]
            keep = {i for i in range(len(outside)) if needs[i]}
            reverse(nodes, grads, keep, slots)
            return [grads.get(i) if needs[i] else None for i in range(len(outside))]
        return values[-1], backward


def _array_module(outside):
    """The array module a group's buffers are made with: NumPy for host arrays, a device's for arrays all on that
    device (each formula is then one CUDA kernel on a GPU, backprop.elementwise); None for anything else (a NumPy
    scalar, arrays of two devices), which the members compute one by one."""
    kinds = {type(v) for v in outside if hasattr(v, "shape")}
    if not kinds or kinds == {np.ndarray}:
        return np
    if len(kinds) == 1 and issubclass(next(iter(kinds)), devices.array_types):
        return devices.array_module(next(v for v in outside if hasattr(v, "shape")))
    return None


def _for_numba(arguments, shape):
    """The arguments in the shapes numba's loops take (backprop.elementwise): the group's shape as one row of
    numbers, or as a matrix beside rows of its last axis (a bias); NumPy broadcasts them the same way."""
    arguments = [a.flat[0] if type(a) is np.ndarray and a.ndim and a.size and not any(a.strides) else a  # one number
                 for a in arguments]                                                      # (a mean's gradient)
    arrays = [a for a in arguments if type(a) is np.ndarray]
    if not all(a.flags.c_contiguous for a in arrays):
        return arguments
    if all(a.shape == shape for a in arrays):
        return [a.reshape(-1) if type(a) is np.ndarray else a for a in arguments]
    if len(shape) >= 2 and all(a.shape == shape or a.shape == shape[-1:] for a in arrays):
        return [a.reshape(-1, shape[-1]) if type(a) is np.ndarray and a.shape == shape else a for a in arguments]
    return arguments


def _source(results, parameters):
    """Python source of ``joined(r0.., the parameters' names.., constants..)`` returning ``results``: one line per
    operation of the expression graph, each computed once; ``parameters`` are (symbol, name) given as arguments
    (an outside array, the upstream gradient, a value the forward formula saved)."""
    names = {id(symbol): name for symbol, name in parameters}
    lines, constants = [], []

    def name_of(symbol):
        if id(symbol) not in names:
            if symbol.op == "constant":
                constants.append(symbol.args[0])
                names[id(symbol)] = f"c{len(constants) - 1}"
            else:
                operands = [name_of(a) for a in symbol.args]
                names[id(symbol)] = f"t{len(lines)}"
                lines.append(f"    t{len(lines)} = {_expression(symbol.op, operands)}")
        return names[id(symbol)]

    returned = [name_of(r) for r in results]
    arguments = [f"r{i}" for i in range(len(results))] + [name for _, name in parameters]
    arguments += [f"c{i}" for i in range(len(constants))]
    body = "\n".join(lines) + f"\n    return {', '.join(returned)}\n"
    return f"def joined({', '.join(arguments)}):\n{body}", constants


def _uses(results, ops):
    seen, stack = set(), list(results)
    while stack:
        symbol = stack.pop()
        if id(symbol) in seen or symbol.op in _LEAVES:
            continue
        if symbol.op in ops:
            return True
        seen.add(id(symbol))
        stack.extend(symbol.args)
    return False


def _forward_values_read(gradients, out):
    """The forward values (not outside arrays or constants) that gradient expressions read, ``out`` excluded."""
    forward, stack = set(), [out]
    while stack:
        symbol = stack.pop()
        if id(symbol) not in forward and symbol.op not in _LEAVES:
            forward.add(id(symbol))
            stack.extend(symbol.args)
    read, seen, stack = {}, set(), list(gradients)
    while stack:
        symbol = stack.pop()
        if id(symbol) in seen:
            continue
        seen.add(id(symbol))
        if id(symbol) in forward:
            read[id(symbol)] = symbol
        elif symbol.op not in _LEAVES:
            stack.extend(symbol.args)
    read.pop(id(out), None)
    return list(read.values())


_OPERATORS = {"add": "+", "subtract": "-", "multiply": "*", "divide": "/"}


def _expression(op, operands):
    if op in _OPERATORS:
        return f"{operands[0]} {_OPERATORS[op]} {operands[1]}"
    if op == "negative":
        return f"-{operands[0]}"
    if op not in symbols.UFUNCS:
        raise ValueError(f"a formula uses '{op}', which is not one of {symbols.UFUNCS}")
    return f"np.{op}({', '.join(operands)})"
