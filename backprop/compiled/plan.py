"""A recorded graph replayed as plain array calls.

``Plan(graph, target, variables)`` turns a trace (backprop.tracing) into two flat loops: the forward
functions of its ops in order, then the backward functions they returned, in reverse, for the nodes
that lead to a trainable variable. No Tensor objects, no tape, no layer calls, no checks. The reverse
loop applies the tape's rules (a gradient is summed back to its input's shape and cast to its dtype;
gradients reaching one value add up in the same order), so a replay computes bit for bit what eager
execution computes.
"""
from backprop.tape import unbroadcast
from backprop.xp import np

_ndarray = np.ndarray


class Plan:
    """Replays one trace: ``run(inputs)`` -> (output arrays, gradients of ``target`` for ``variables``)."""

    def __init__(self, graph, target, variables):
        self.variables = list(variables)
        self._values = [None] * len(graph.inputs)      # inputs, then constants, variables and node outputs
        slot_of_variable = {}
        requires = {}                                  # slot -> whether its gradient is needed
        self._forward_steps, self._backward_steps = [], []

        def slot(source):
            if source is None:
                return self._constant(None)
            if source.kind == "input":
                return source.index
            if source.kind == "node":
                return node_slots[source.index]
            if source.kind == "variable":
                key = id(source.value)
                if key not in slot_of_variable:
                    slot_of_variable[key] = self._constant(source.value.data)
                    self._variable_slots.append((slot_of_variable[key], source.value))
                    requires[slot_of_variable[key]] = bool(source.value._trainable)
                return slot_of_variable[key]
            return self._constant(source.value)

        self._variable_slots, node_slots = [], []
        for node in graph.nodes:
            if node.forward is None:
                raise ValueError(f"{graph.where(node)} has no recorded forward function: it cannot be replayed")
            inputs = tuple(slot(source) for source in node.inputs)
            out = self._constant(None)
            node_slots.append(out)
            needs = tuple(not node.effect and requires.get(i, False) for i in inputs)
            requires[out] = any(needs)
            position = len(self._forward_steps)
            self._forward_steps.append((node.forward, inputs, node.params, out, position if any(needs) else None))
            if any(needs):
                self._backward_steps.append((position, out, inputs, needs))
        self.outputs = [source.index if source.kind == "input" else node_slots[source.index] for source in graph.outputs]
        self._target = self.outputs[target]
        self._gradient_slots = [slot_of_variable.get(id(v)) for v in self.variables]

    def _constant(self, value):
        self._values.append(value)
        return len(self._values) - 1

    def run(self, inputs):
        """Outputs (arrays) and the target's gradient for each variable (None where it does not depend on it)."""
        values = self._values
        values[:len(inputs)] = inputs
        for slot, variable in self._variable_slots:
            values[slot] = variable.data
        backwards = [None] * len(self._forward_steps)
        for forward, inputs_of, params, out, position in self._forward_steps:
            result, backward = forward(*[values[i] for i in inputs_of], **params)
            values[out] = result if type(result) is _ndarray else np.asarray(result)
            if position is not None:
                backwards[position] = backward
        return [values[i] for i in self.outputs], self._gradients(values, backwards)

    def _gradients(self, values, backwards):
        grads = {self._target: np.ones_like(values[self._target])}
        keep = set(self._gradient_slots)
        for position, out, inputs, needs in reversed(self._backward_steps):
            g = grads.get(out) if out in keep else grads.pop(out, None)
            if g is None:
                continue
            for slot, needed, gx in zip(inputs, needs, backwards[position](g, needs)):
                if not needed or gx is None:
                    continue
                data = values[slot]
                if gx.shape != data.shape:
                    gx = unbroadcast(gx, data.shape)
                if gx.dtype != data.dtype:
                    gx = gx.astype(data.dtype)
                grads[slot] = grads[slot] + gx if slot in grads else gx
        return [None if slot is None else grads.get(slot) for slot in self._gradient_slots]
