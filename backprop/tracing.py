"""Record what a function computes as a graph of ops: the form that export (ONNX) translates and that a
compiled step replays (each node keeps its op's forward function).

``trace(fn, examples)`` calls ``fn`` once on placeholder tensors while a monitor records every op
(its name, parameters and where each input came from). Every input of a node is a ``Source``: one of
the graph's inputs, an earlier node's output, a Variable (a weight) or a constant. Every value gets its
provenance when it is made: an op's result is its node's output; a tensor that existed before the trace
or that the function made itself from Python values (``bp.tensor([1., 2.])``) is a constant, as are
plain NumPy arrays handed to an op. A tensor made by wrapping a computed array during the trace
(``Tensor._wrap``, outside any op) is a value the recording cannot place: a strict recording
(``bp.function``) raises TraceError naming the op, a lenient one (``fit``'s compiled step) notes the
problem and trains eagerly. Reading any traced value in Python, a Variable's included, is refused the
same way. Random draws, ``stop_gradient``, casts and tensor-valued indices are ops like any other.

Each node also keeps, for every GradientTape recording when its op ran, the tape's own decision of which
inputs need a gradient; a replayed ``tape.gradient`` follows exactly those decisions, through the same
reverse loop as the tape (``tape.reverse``).
"""
import contextlib
import contextvars
import functools
import sys
import threading
from dataclasses import dataclass, field

from backprop import tape as tape_module
from backprop.devices import asarray
from backprop.ops import op as op_module
from backprop.tensor import Tensor, Variable, births, recordings, value_reads, variable_writes

_TENSOR_FILE = sys.modules[Tensor.__module__].__file__
from backprop.xp import np


# The Recorder of the current context, while one records: what tape.gradient and @replayed methods report to.
current = contextvars.ContextVar("backprop_tracing_recorder", default=None)


class TraceError(ValueError):
    """A computation that cannot be recorded or translated faithfully; the message names the op and layer."""


@dataclass(frozen=True, eq=False)
class Source:
    kind: str            # "input", "node", "variable" or "constant"
    index: int = None    # the input's or node's position; a constant tensor's number (None: a plain value)
    value: object = None  # the Variable or the constant array

    def key(self):
        """Where the value lives, as a hashable pair: one slot per input, node, variable or constant tensor."""
        if self.kind == "variable":
            return ("variable", id(self.value))
        return None if self.kind == "constant" and self.index is None else (self.kind, self.index)

    def __eq__(self, other):
        return isinstance(other, Source) and self.kind == other.kind and self.index == other.index and \
            (self.kind != "variable" or self.value is other.value) and (self.kind != "constant" or self.index is not None
                                                                        or self.value is other.value)

    __hash__ = object.__hash__


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
    tapes: tuple = ()       # (tape number, needs) for each GradientTape that kept the op: what needs a gradient


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


class Recorder:
    """The monitor that builds a Graph while ops run; ``add_input`` declares a new input mid-trace."""

    def __init__(self, graph, strict=True):
        self.graph, self.strict = graph, strict
        self.sources = {}     # id(tensor or its array) -> Source
        self.keep_alive = []  # ids stay unique while the trace holds the tensors
        self.problem = None   # without ``strict``: the first reason the recording cannot be replayed
        self.tape_numbers = {}
        self.born = set()     # ids of tensors wrapped from arrays during the trace (ops claim theirs)
        self.layers_called = []  # every layer called while recording: the recording holds for their versions
        self.layers_open = []    # the names of the layers being called, innermost last (for messages)
        self.constants = {}   # id(constant tensor) -> its Source

    def _born(self, tensor):
        self.born.add(id(tensor))
        self.keep_alive.append(tensor)

    def refuse(self, problem):
        """A value the recording cannot replay: an error when strict, else the first problem noted."""
        if self.strict:
            raise TraceError(problem)
        self.problem = self.problem or problem

    def add_input(self, array):
        """A placeholder tensor for ``array``, recorded as the graph's next input."""
        placeholder = Tensor._wrap(asarray(array))
        source = Source("input", len(self.graph.inputs))
        self.graph.inputs.append((placeholder.shape, placeholder.data.dtype))
        self.sources[id(placeholder)] = self.sources[id(placeholder.data)] = source
        self.keep_alive += [placeholder, placeholder.data]
        return placeholder

    def source(self, value, user="an op"):
        if value is None:
            return None
        if isinstance(value, np.ndarray) and id(value) in self.sources:  # a placeholder's own array, unwrapped
            return self.sources[id(value)]
        if isinstance(value, Tensor):
            known = self.sources.get(id(value)) or self.constants.get(id(value))
            if known is not None:
                return known
            if isinstance(value, Variable):
                return Source("variable", value=value)
            if id(value) in self.born:
                self.refuse(f"{user} takes a tensor that was made outside backprop's ops while tracing (an array "
                            "computed from traced values and wrapped into a new tensor); a recording cannot compute "
                            "it again: use backprop ops (bp.cast, bp.stop_gradient, bp.random.*) instead")
            self.constants[id(value)] = Source("constant", len(self.constants), value.data)
            self.keep_alive.append(value)
            return self.constants[id(value)]
        return Source("constant", value=op_module.operand(value))  # what the op itself made of it

    def write(self, variable, kind, value):
        """A variable written inside the recording: the write is a node of its own, replayed in order."""
        layer = self._calling_layer()
        self.graph.nodes.append(Node(kind, [Source("variable", value=variable), self.source(value, _where(kind, layer))],
                                     {}, tuple(variable.shape), variable.data.dtype, layer, WRITES[kind], effect=True))

    def set_outputs(self, outputs):
        for output in outputs:
            source = output if isinstance(output, Source) else self.source(output)
            if source is None or source.kind not in ("node", "input"):
                raise TraceError("the traced function returned a value that was not computed by backprop ops from "
                                 "its inputs (was it converted with .numpy() or built from NumPy arrays?)")
            self.graph.outputs.append(source)

    def check_read(self, value):
        """Reading a traced value or a Variable in Python would freeze it into the recording: refuse, naming the
        line (a constant the function was given or made itself may be read)."""
        if not isinstance(value, Variable) and id(value) not in self.sources and id(value) not in self.born:
            return
        frame = sys._getframe(1)
        while frame is not None and frame.f_code.co_filename in (_TENSOR_FILE, __file__):
            frame = frame.f_back
        where = f" at {frame.f_code.co_filename}:{frame.f_lineno}" if frame is not None else ""
        what = f"the values of the variable '{value.path}'" if isinstance(value, Variable) else "a tensor's values"
        self.refuse(f"a traced function reads {what} in Python{where} (.numpy(), float(), bool() or an if "
                    "on a tensor); a recording cannot replay that: compute with backprop ops instead")

    def __call__(self, name, result, inputs, params, forward=None):
        layer = self._calling_layer()
        sources = [self.source(value, _where(name, layer)) for value in inputs]
        kept = tuple((self._number(tape), tape._nodes[-1][3]) for tape in tape_module.recording()
                     if tape._nodes and tape._nodes[-1][0] is result)
        node = Node(name, sources, dict(params), tuple(result.shape), result.data.dtype, layer, forward, tapes=kept)
        self._add(node, result)

    @contextlib.contextmanager
    def inside(self, layer):
        """Layer.__call__ runs inside this: ops recorded meanwhile name the layer."""
        self.layers_called.append(layer)
        self.layers_open.append(layer.name)
        try:
            yield
        finally:
            self.layers_open.pop()

    def _calling_layer(self):
        return self.layers_open[-1] if self.layers_open else None

    def _number(self, tape):
        if id(tape) not in self.tape_numbers:
            self.tape_numbers[id(tape)] = len(self.tape_numbers)
            self.keep_alive.append(tape)
        return self.tape_numbers[id(tape)]

    def _add(self, node, result=None):
        if result is not None:
            self.sources[id(result)] = Source("node", len(self.graph.nodes))
            self.keep_alive.append(result)
        self.graph.nodes.append(node)
        return len(self.graph.nodes) - 1

    def gradient(self, tape, target, sources, results, unconnected, output_gradients=None):
        """``tape.gradient`` ran: a node that a replay answers with the backward pass over that tape's nodes."""
        if not isinstance(target, Tensor) or output_gradients is not None:
            raise TraceError("a recorded tape.gradient takes one target tensor and no output_gradients")
        inputs = [self.source(target, "tape.gradient")] + [self.source(s, "tape.gradient") for s in sources]
        params = {"tape": self._number(tape), "unconnected": unconnected}
        index = self._add(Node("gradient", inputs, params, (), None, None, None, effect=True))
        self.last_gradient = Source("node", index)
        for position, result in enumerate(results):
            if result is not None:
                self._add(Node("gradient_output", [Source("node", index)], {"index": position}, result.shape,
                               result.data.dtype, None, _select, effect=True), result)

    def effect(self, method, owner, args, kwargs, recorded=None):
        """A @replayed method called while recording: one node calling it again on the replay's arrays."""
        args = _materialized(args)
        if recorded is not None:
            tensors, forward = recorded(owner, args, kwargs)
            kwargs_for_replay = {}
        else:
            tensors = []
            forward = _EffectCall(method, owner, _template(args, tensors))
            kwargs_for_replay = dict(kwargs)
        node = Node(f"{type(owner).__name__}.{method.__name__}", [self.source(t) for t in tensors], kwargs_for_replay,
                    (), None, self._calling_layer(), forward, effect=True)
        self._add(node)
        with paused():
            return method(owner, *args, **kwargs)


def _where(op, layer):
    return f"op '{op}'" + (f" in layer '{layer}'" if layer else "")


def _select(outputs, index):
    return outputs[index], None


def _materialized(args):
    """Iterators among the arguments (``zip(grads, variables)``) as lists, so they can be read twice."""
    return tuple(list(a) if not isinstance(a, (Tensor, list, tuple, dict, str, bytes, int, float, type(None)))
                 and hasattr(a, "__next__") else a for a in args)


def _template(value, tensors):
    """``value`` with every non-Variable tensor replaced by its position in ``tensors`` (appended)."""
    if isinstance(value, Tensor) and not isinstance(value, Variable):
        tensors.append(value)
        return _Slot(len(tensors) - 1)
    if isinstance(value, (list, tuple)):
        return type(value)(_template(v, tensors) for v in value)
    if isinstance(value, dict):
        return {k: _template(v, tensors) for k, v in value.items()}
    return value


class _Slot:
    __slots__ = ("position",)

    def __init__(self, position):
        self.position = position


def _filled(template, tensors):
    if isinstance(template, _Slot):
        return tensors[template.position]
    if isinstance(template, (list, tuple)):
        return type(template)(_filled(v, tensors) for v in template)
    if isinstance(template, dict):
        return {k: _filled(v, tensors) for k, v in template.items()}
    return template


class _EffectCall:
    """The forward of an effect node: the method again, its tensor arguments taken from the replay."""

    def __init__(self, method, owner, template):
        self.method, self.owner, self.template = method, owner, template

    def __call__(self, *arrays, **kwargs):
        args = _filled(self.template, [Tensor._wrap(a) for a in arrays])
        return self.method(self.owner, *args, **kwargs), None


def replayed(method=None, *, recorded=None):
    """Decorator for methods whose effect a recording cannot see op by op (an optimizer's update, a metric's
    update): while recording, the call itself becomes a node, replayed with the replay's tensors.
    ``recorded(owner, args, kwargs) -> (tensors, forward)`` may give a faster replay than calling the method
    again on rebuilt arguments."""
    if method is None:
        return functools.partial(replayed, recorded=recorded)

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        recorder = current.get()
        if recorder is None:
            return method(self, *args, **kwargs)
        return recorder.effect(method, self, args, kwargs, recorded)
    return wrapper


@contextlib.contextmanager
def _set(pairs):
    tokens = [(variable, variable.set(value)) for variable, value in pairs]
    try:
        yield
    finally:
        for variable, token in reversed(tokens):
            variable.reset(token)


_counting = threading.Lock()


@contextlib.contextmanager
def _births_to(hook):
    before, births.hook = births.hook, hook
    with _counting:
        recordings[0] += 1
    try:
        yield
    finally:
        births.hook = before
        with _counting:
            recordings[0] -= 1


@contextlib.contextmanager
def recording(recorder):
    """Record every op run inside the block onto ``recorder``; reading a recorded value raises TraceError."""
    with _set([(op_module.monitors, op_module.monitors.get() + (recorder,)), (value_reads, recorder.check_read),
               (variable_writes, recorder.write), (tape_module.gradient_hooks, recorder.gradient),
               (current, recorder)]), _births_to(recorder._born):
        yield


@contextlib.contextmanager
def paused():
    """Nothing inside the block is recorded or checked (an effect's own work)."""
    with _set([(op_module.monitors, tuple(m for m in op_module.monitors.get() if not isinstance(m, Recorder))),
               (value_reads, None), (variable_writes, None), (tape_module.gradient_hooks, None), (current, None)]), \
            _births_to(None):
        yield


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
        return np.shape(a) == np.shape(b) and asarray(a).dtype == asarray(b).dtype and \
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
        if a.tapes != b.tapes:
            raise TraceError(f"what needs a gradient at {first.where(a)} changes with the input values")
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
