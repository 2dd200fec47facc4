"""A recorded graph replayed as plain array calls.

``Plan(graph)`` turns a trace (backprop.tracing) into one flat loop over its nodes: each op's forward
function on arrays, each effect (a variable write, an optimizer update) called again, and each
``tape.gradient`` answered by the backward functions of the ops that tape kept, in reverse, through the
tape's own reverse loop (``tape.reverse``) and with the needs the tape decided when each op ran. No
Tensor objects, no tape, no layer calls, no checks: a replay computes bit for bit what eager execution
computes. Large chains of elementwise ops are first joined into one op each (backprop.compiled.fusion).
"""
import time

from backprop.compiled import fusion
from backprop.tape import Into, ready_callbacks, reverse
from backprop.devices import asarray
from backprop.xp import np

_ndarray = np.ndarray


class Plan:
    """``run(inputs)`` -> the graph's outputs, computed again from new input arrays."""

    def __init__(self, graph, fuse=None, gradients_into=None):
        """``gradients_into``: {id(variable): array} where a gradient call may write those variables' gradients
        (a training step's gradient buffer), used when the graph takes one gradient."""
        started = time.perf_counter()
        if fuse if fuse is not None else fusion.enabled():
            graph = fusion.fused(graph)
        if sum(node.op == "gradient" for node in graph.nodes) != 1:
            gradients_into = None
        self._values = [None] * len(graph.inputs)  # inputs, then constants, variables and node outputs
        self._variables = []                       # (slot, Variable): read afresh at every run
        self._slot_of = {}                         # ('variable', id) / ('node', i) / ('input', i) -> slot
        self._steps = []
        for index, node in enumerate(graph.nodes):
            inputs = tuple(self._slot(source) for source in node.inputs)
            out = self._new_slot(None)
            self._slot_of[("node", index)] = out
            if node.op == "gradient":
                self._steps.append((True, _Backpropagation(self, graph, index, inputs, gradients_into), (), None, out,
                                    None))
            elif node.forward is None:
                raise ValueError(f"{graph.where(node)} has no recorded forward function: it cannot be replayed")
            else:
                keeps_backward = index if not node.effect and node.tapes else None
                self._steps.append((False, node.forward, inputs, node.params, out, keeps_backward))
        self._size = len(graph.nodes)
        self.outputs = [self._slot(source) for source in graph.outputs]
        self.run = self._compiled_run()
        self._build_seconds = time.perf_counter() - started

    def compile_seconds(self):
        """Seconds spent making this plan: building it, joining its groups, and numba compiling their loops."""
        joined = [call for _, call, *_ in self._steps if isinstance(call, fusion.Joined)]
        return self._build_seconds + sum(j.compile_seconds() for j in joined)

    def _new_slot(self, value):
        self._values.append(value)
        return len(self._values) - 1

    def _slot(self, source):
        if source is None:
            return self._new_slot(None)
        if source.kind == "input":
            return source.index
        if source.kind == "node":
            return self._slot_of[("node", source.index)]
        key = source.key()
        if key is None:  # a plain constant value
            return self._new_slot(source.value)
        if key not in self._slot_of:
            self._slot_of[key] = self._new_slot(source.value.data if source.kind == "variable" else source.value)
            if source.kind == "variable":
                self._variables.append((self._slot_of[key], source.value))
        return self._slot_of[key]

    def _compiled_run(self):
        """``run(inputs)`` -> the outputs: one generated Python function, a line per step (no loop to interpret, no
        argument lists built at each step, simple parameters written in). A run's arrays live in its own list,
        freed when it returns; variables are read afresh at every run."""
        namespace = {"ndarray": _ndarray, "asarray": asarray, "template": self._values}
        lines = ["def run(inputs):", "    values = template.copy()", "    values[:len(inputs)] = inputs"]
        for k, (slot, variable) in enumerate(self._variables):
            namespace[f"variable{k}"] = variable
            lines.append(f"    values[{slot}] = variable{k}.data")
        lines.append(f"    backwards = [None] * {self._size}")
        for k, (is_gradient, call, inputs_of, params, out, position) in enumerate(self._steps):
            namespace[f"call{k}"] = call
            if is_gradient:
                lines.append(f"    values[{out}] = call{k}(values, backwards)")
                continue
            arguments = [f"values[{i}]" for i in inputs_of] + [_keyword(name, value, f"p{k}_{name}", namespace)
                                                                for name, value in params.items()]
            lines.append(f"    result, backward = call{k}({', '.join(arguments)})")
            lines.append(f"    values[{out}] = result if type(result) is ndarray else asarray(result)")
            if position is not None:
                lines.append(f"    backwards[{position}] = backward")
        lines.append(f"    return [{', '.join(f'values[{i}]' for i in self.outputs)}]")
        exec(compile("\n".join(lines) + "\n", "<replay plan>", "exec"), namespace)
        return namespace["run"]


_LITERALS = (str, int, float, bool, type(None))


def _keyword(name, value, binding, namespace):
    """``name=value`` for a generated call: a Python literal written in, anything else bound by name."""
    if type(value) in _LITERALS or (type(value) is tuple and all(type(v) in _LITERALS for v in value)):
        text = repr(value)
        if "inf" not in text and "nan" not in text:
            return f"{name}={text}"
    namespace[binding] = value
    return f"{name}={binding}"


# Ops whose backward functions write a gradient into its destination (tape.Into) when given one.
WRITES_INTO = {"dense"}


class _Backpropagation:
    """One ``tape.gradient`` call: the reverse pass over the nodes its tape kept before it."""

    def __init__(self, plan, graph, index, inputs, gradients_into=None):
        node = graph.nodes[index]
        tape, self.unconnected = node.params["tape"], node.params["unconnected"]
        self.target, self.sources = inputs[0], inputs[1:]
        self.variables = [s.value if s is not None and s.kind == "variable" else None for s in node.inputs[1:]]
        self.steps = []  # (position, out slot, input slots, needs, op name)
        for position in range(index):
            earlier = graph.nodes[position]
            needs = dict(earlier.tapes).get(tape)
            if needs is None or earlier.effect:
                continue
            slots = tuple(None if s is None or s.key() is None else plan._slot(s) for s in earlier.inputs)
            self.steps.append((position, plan._slot_of[("node", position)], slots, needs, earlier.op))
        if gradients_into:
            self._write_into(gradients_into)

    def _write_into(self, gradients_into):
        """Let the op that reads a source write its gradient straight into the source's destination (a weight
        read by several ops gets the sum of their gradients, a new array, so none of them writes there)."""
        destination = {slot: gradients_into.get(id(variable)) for slot, variable in zip(self.sources, self.variables)}
        readers = {}
        for step, (_, _, slots, needs, _) in enumerate(self.steps):
            for k, (slot, needed) in enumerate(zip(slots, needs)):
                if needed and destination.get(slot) is not None:
                    readers.setdefault(slot, []).append((step, k))
        for slot, reads in readers.items():
            step, k = reads[0]
            position, out, slots, needs, name = self.steps[step]
            if len(reads) == 1 and name in WRITES_INTO:
                needs = needs[:k] + (Into(destination[slot]),) + needs[k + 1:]
                self.steps[step] = (position, out, slots, needs, name)

    def __call__(self, values, backwards):
        target = values[self.target]
        grads = {self.target: np.ones_like(target)}
        nodes = [(out, inputs, backwards[position], needs, name) for position, out, inputs, needs, name in self.steps]
        reverse(nodes, grads, set(self.sources), values, ready=ready_callbacks(self.variables, self.sources))
        zeros = self.unconnected == "zero"
        return [grads[slot] if slot in grads else np.zeros_like(values[slot]) if zeros else None
                for slot in self.sources]
