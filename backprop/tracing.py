"""Record what a function computes as a graph of ops: the form that export (ONNX) translates and that a
compiled step replays (each node keeps its op's forward function).

``trace(fn, examples)`` calls ``fn`` once on placeholder tensors while a monitor records every op
(its name, parameters and where each input came from). Every input of a node is a ``Source``: one of
the graph's inputs, an earlier node's output, a Variable (a weight) or a constant array. A tensor that
reaches an op without coming from a recorded op, a graph input or a Variable was computed outside the
ops (``.numpy()`` arithmetic, say); it is recorded as a constant, and ``same_computation`` compares two
traces on different inputs to catch it.
"""
import contextlib
import sys
from dataclasses import dataclass, field

from backprop.ops import op as op_module
from backprop.tensor import Tensor, Variable, value_reads, variable_writes

_TENSOR_FILE = sys.modules[Tensor.__module__].__file__
from backprop.xp import np


class TraceError(ValueError):
    """A computation that cannot be recorded or translated faithfully; the message names the op and layer."""


@dataclass(frozen=True)
class Source:
    kind: str            # "input", "node", "variable" or "constant"
    index: int = None    # the input's or node's position
    value: object = None  # the Variable or the constant array


@dataclass
class Node:
    op: str
    inputs: list          # Sources, or None for an absent optional input (a Dense without bias)
    params: dict
    shape: tuple          # the output's shape and dtype in this trace
    dtype: object
    layer: str = None     # the innermost layer that called the op, for messages
    forward: object = None  # the op's forward(*arrays, **params) -> (out, backward), for replay
    effect: bool = False    # a write into a variable (assign_add, ...): replayed, never differentiated


@dataclass
class Graph:
    inputs: list                     # (shape, dtype) of each placeholder
    nodes: list = field(default_factory=list)
    outputs: list = field(default_factory=list)  # Sources

    def where(self, node):
        return f"op '{node.op}'" + (f" in layer '{node.layer}'" if node.layer else "")


def _assign(target, value):
    target[...] = value
    return target, None


def _assign_add(target, delta):
    target += delta
    return target, None


def _assign_sub(target, delta):
    target -= delta
    return target, None


def _multiply_assign(target, factor):
    target *= factor
    return target, None


def _divide_assign(target, divisor):
    target /= divisor
    return target, None


WRITES = {"assign": _assign, "assign_add": _assign_add, "assign_sub": _assign_sub,
          "multiply_assign": _multiply_assign, "divide_assign": _divide_assign}


def _calling_layer():
    """The name of the innermost Layer whose method is on the stack (only while tracing: it walks frames)."""
    from backprop.layers.layer import Layer
    frame = sys._getframe(2)
    while frame is not None:
        candidate = frame.f_locals.get("self")
        if isinstance(candidate, Layer):
            return candidate.name
        frame = frame.f_back
    return None


class Recorder:
    """The monitor that builds a Graph while ops run; ``add_input`` declares a new input mid-trace."""

    def __init__(self, graph, strict=True):
        self.graph, self.strict = graph, strict
        self.sources = {}     # id(tensor or its array) -> Source
        self.keep_alive = []  # ids stay unique while the trace holds the tensors
        self.problem = None   # without ``strict``: the first reason the recording cannot be replayed

    def add_input(self, array):
        """A placeholder tensor for ``array``, recorded as the graph's next input."""
        placeholder = Tensor._wrap(np.asarray(array))
        source = Source("input", len(self.graph.inputs))
        self.graph.inputs.append((placeholder.shape, placeholder.data.dtype))
        self.sources[id(placeholder)] = self.sources[id(placeholder.data)] = source
        self.keep_alive += [placeholder, placeholder.data]
        return placeholder

    def source(self, value):
        if value is None:
            return None
        if isinstance(value, np.ndarray) and id(value) in self.sources:  # a placeholder's own array, unwrapped
            return self.sources[id(value)]
        if isinstance(value, Tensor):
            known = self.sources.get(id(value))
            if known is not None:
                return known
            if isinstance(value, Variable):
                return Source("variable", value=value)
            return Source("constant", value=np.array(value.data))
        if isinstance(value, (list, tuple)):
            return Source("constant", value=np.asarray(value))
        return Source("constant", value=value if isinstance(value, (int, float)) else np.array(value))

    def write(self, variable, kind, value):
        """A variable written inside the recording: the write is a node of its own, replayed in order."""
        self.graph.nodes.append(Node(kind, [Source("variable", value=variable), self.source(value)], {},
                                     tuple(variable.shape), variable.data.dtype, _calling_layer(), WRITES[kind],
                                     effect=True))

    def set_outputs(self, outputs):
        for output in outputs:
            source = self.source(output)
            if source is None or source.kind not in ("node", "input"):
                raise TraceError("the traced function returned a value that was not computed by backprop ops from "
                                 "its inputs (was it converted with .numpy() or built from NumPy arrays?)")
            self.graph.outputs.append(source)

    def check_read(self, value):
        """Reading a traced value in Python would freeze it into the recording: refuse, naming the line."""
        if isinstance(value, Variable) or id(value) not in self.sources:
            return
        frame = sys._getframe(1)
        while frame is not None and frame.f_code.co_filename in (_TENSOR_FILE, __file__):
            frame = frame.f_back
        where = f" at {frame.f_code.co_filename}:{frame.f_lineno}" if frame is not None else ""
        problem = (f"a traced function reads a tensor's values in Python{where} (.numpy(), float(), bool() or an if "
                   "on a tensor); a recording cannot replay that: compute with backprop ops instead")
        if self.strict:
            raise TraceError(problem)
        self.problem = self.problem or problem

    def __call__(self, name, result, inputs, params, forward=None):
        node = Node(name, [self.source(value) for value in inputs], dict(params), tuple(result.shape),
                    result.data.dtype, _calling_layer(), forward)
        self.sources[id(result)] = Source("node", len(self.graph.nodes))
        self.keep_alive.append(result)
        self.graph.nodes.append(node)


@contextlib.contextmanager
def recording(recorder):
    """Record every op run inside the block onto ``recorder``; reading a recorded value raises TraceError."""
    token = op_module.monitors.set(op_module.monitors.get() + (recorder,))
    reads = value_reads.set(recorder.check_read)
    writes = variable_writes.set(recorder.write)
    try:
        yield
    finally:
        variable_writes.reset(writes)
        value_reads.reset(reads)
        op_module.monitors.reset(token)


def trace(fn, examples):
    """The Graph of ``fn(*placeholders)`` for example arrays; ``fn`` returns a tensor or a list of them."""
    recorder = Recorder(Graph([]))
    placeholders = [recorder.add_input(example) for example in examples]
    with recording(recorder):
        outputs = fn(*placeholders)
    recorder.set_outputs([outputs] if isinstance(outputs, Tensor) else list(outputs))
    return recorder.graph


def _same_constant(a, b):
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.shape(a) == np.shape(b) and np.asarray(a).dtype == np.asarray(b).dtype and \
            np.array_equal(a, b, equal_nan=True)
    return type(a) is type(b) and (a == b or (a != a and b != b))


def same_computation(first, second, varying=()):
    """Raise TraceError unless two traces of one function on different inputs ran the same ops on the same
    weights and constants; parameters named in ``varying`` (shapes that follow the batch) may differ."""
    if len(first.nodes) != len(second.nodes) or any(a.op != b.op for a, b in zip(first.nodes, second.nodes)):
        at = next((a for a, b in zip(first.nodes, second.nodes) if a.op != b.op), None)
        raise TraceError("the computation changes with the input values (Python control flow on tensor values?)"
                         + (f" at {first.where(at)}" if at else ""))
    for a, b in zip(first.nodes, second.nodes):
        for x, y in zip(a.inputs, b.inputs):
            if (x is None) != (y is None) or (x is not None and (x.kind != y.kind or x.index != y.index)):
                raise TraceError(f"the inputs of {first.where(a)} change with the input values")
            if x is not None and x.kind == "variable" and x.value is not y.value:
                raise TraceError(f"{first.where(a)} uses different weights on different inputs")
            if x is not None and x.kind == "constant" and not _same_constant(x.value, y.value):
                raise TraceError(f"{first.where(a)} takes a value computed outside backprop's ops from the "
                                 "inputs (with .numpy() or NumPy arrays); it cannot be recorded")
        for key in set(a.params) | set(b.params):
            if key not in varying and not _same_constant(a.params.get(key), b.params.get(key)):
                raise TraceError(f"the parameter '{key}' of {first.where(a)} changes with the input values")
    if first.outputs != second.outputs:
        raise TraceError("the function's outputs come from different ops on different inputs")
