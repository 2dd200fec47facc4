"""The functional API: ``inputs = bp.Input(shape=(64,)); outputs = Dense(10)(Dense(32)(inputs));
model = bp.Model(inputs, outputs)``.

Calling a layer on a SymbolicTensor (Keras' KerasTensor) builds the layer on a one-example batch
of zeros, to learn its output shape, and returns a new SymbolicTensor that remembers the layer and
its inputs. A Functional model replays those nodes in order on real tensors.
"""
from backprop.layers.core import InputLayer
from backprop.layers.symbolic import SymbolicTensor
from backprop.models.model import Model
from backprop.saving.registry import lookup, registered_name


class Functional(Model, made_from_inputs_and_outputs=True):
    """A model defined by connecting layers from Input(s) to output(s); see the module docstring."""

    def __init__(self, inputs, outputs, name=None, trainable=True, **kwargs):
        self._single_input = not isinstance(inputs, (list, tuple))
        self._single_output = not isinstance(outputs, (list, tuple))
        inputs = [inputs] if self._single_input else list(inputs)
        outputs = [outputs] if self._single_output else list(outputs)
        bad = [v for v in inputs + outputs if not isinstance(v, SymbolicTensor)]
        if bad:
            raise TypeError(f"Model(inputs, outputs): expected tensors from bp.Input and layer calls, got {bad[0]!r}")
        if any(not isinstance(i.layer, InputLayer) for i in inputs):
            raise ValueError("Model(inputs, outputs): every input must come from bp.Input(shape=...)")
        super().__init__(name=name, trainable=trainable, dtype=inputs[0].dtype.name, **kwargs)
        self._inputs, self._outputs = inputs, outputs
        self._nodes = _nodes_in_order(outputs)
        missing = [n for n in self._nodes if isinstance(n.layer, InputLayer) and n not in inputs]
        if missing:
            raise ValueError(f"Model(inputs, outputs): the outputs depend on input {missing[0].layer.name!r}, which "
                             "is not among the model's inputs")
        for layer in _unique_layers(self._nodes):
            self._track(layer)
        self._build_input_shape = inputs[0].shape if self._single_input else None
        self.built = True

    def _key_of(self, layer):
        """Weights in saved files are named by layer name, which the config keeps."""
        return layer.name

    @property
    def layers(self):
        return [layer for layer in _unique_layers(self._nodes) if not isinstance(layer, InputLayer)]

    @property
    def inputs(self):
        return self._inputs[0] if self._single_input else list(self._inputs)

    @property
    def outputs(self):
        return self._outputs[0] if self._single_output else list(self._outputs)

    def call(self, inputs, training=None):
        given = [inputs] if self._single_input or not isinstance(inputs, (list, tuple)) else list(inputs)
        if len(given) != len(self._inputs):
            raise ValueError(f"model '{self.name}' takes {len(self._inputs)} inputs, got {len(given)}")
        values = {id(symbol): value for symbol, value in zip(self._inputs, given)}
        for node in self._nodes:
            if isinstance(node.layer, InputLayer):
                values[id(node)] = node.layer(values[id(node)])  # checks the example shape
                continue
            args = [values[id(source)] for source in node.inputs]
            values[id(node)] = node.layer(args[0] if len(args) == 1 else args, training=training)
        results = [values[id(output)] for output in self._outputs]
        return results[0] if self._single_output else results

    def get_config(self):
        layers = _unique_layers(self._nodes)
        index = {id(layer): position for position, layer in enumerate(layers)}
        node_index = {id(node): position for position, node in enumerate(self._nodes)}
        return {"name": self.name, "trainable": self.trainable,
                "layers": [{"class_name": registered_name(layer), "config": layer.get_config()} for layer in layers],
                "nodes": [{"layer": index[id(node.layer)], "inputs": [node_index[id(s)] for s in node.inputs]}
                          for node in self._nodes],
                "inputs": [node_index[id(i)] for i in self._inputs], "outputs": [node_index[id(o)] for o in self._outputs],
                "single_input": self._single_input, "single_output": self._single_output}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        layers = [lookup(spec["class_name"], custom_objects).from_config(spec["config"]) for spec in config["layers"]]
        nodes = []
        for spec in config["nodes"]:
            layer = layers[spec["layer"]]
            if isinstance(layer, InputLayer):
                nodes.append(SymbolicTensor((None,) + layer.input_shape, layer.dtype, layer))
            else:
                sources = [nodes[i] for i in spec["inputs"]]
                nodes.append(layer(sources[0] if len(sources) == 1 else sources))
        inputs, outputs = [nodes[i] for i in config["inputs"]], [nodes[i] for i in config["outputs"]]
        return cls(inputs[0] if config["single_input"] else inputs, outputs[0] if config["single_output"] else outputs,
                   name=config["name"], trainable=config["trainable"])


def _nodes_in_order(outputs):
    """Every node the outputs depend on, each after its inputs (iterative depth-first search)."""
    order, done, stack = [], set(), [(output, False) for output in reversed(outputs)]
    while stack:
        node, expanded = stack.pop()
        if id(node) in done:
            continue
        if expanded:
            done.add(id(node))
            order.append(node)
            continue
        stack.append((node, True))
        stack.extend((source, False) for source in reversed(node.inputs) if id(source) not in done)
    return order


def _unique_layers(nodes):
    seen, layers = set(), []
    for node in nodes:
        if id(node.layer) not in seen:
            seen.add(id(node.layer))
            layers.append(node.layer)
    return layers
