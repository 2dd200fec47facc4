"""Sequential: a plain stack of layers, each feeding the next."""
from backprop.layers.core import InputLayer
from backprop.layers.layer import Layer
from backprop.layers.symbolic import SymbolicTensor
from backprop.models.model import Model
from backprop.saving.registry import lookup, registered_name


class Sequential(Model):
    """``Sequential([Dense(3, activation="sigmoid"), Dense(1, activation="sigmoid")])``, or ``.add()``."""

    def __init__(self, layers=None, name=None, dtype=None, **kwargs):
        layers = list(layers or [])
        if dtype is None and layers:  # inputs are cast to the first layer's dtype, not float32 then promoted
            first = layers[0].layer if isinstance(layers[0], SymbolicTensor) else layers[0]
            dtype = getattr(first, "dtype", None)
        super().__init__(name=name, dtype=dtype, **kwargs)
        self._stack = []
        for layer in layers:
            self.add(layer)

    def add(self, layer):
        if isinstance(layer, SymbolicTensor) and isinstance(layer.layer, InputLayer):
            layer = layer.layer  # Sequential([bp.Input(shape=(2,)), ...]), as in Keras
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential.add: expected a Layer, got {type(layer).__name__}")
        self._stack.append(layer)
        self._track(layer)
        if len(self._stack) == 1 and layer.input_shape is not None:
            self.input_shape = layer.input_shape
        if self.input_shape is not None:
            self.build((None,) + tuple(self.input_shape))

    def _key_of(self, layer):
        """Weights in saved files are named by layer name, which the config keeps."""
        return layer.name

    def pop(self):
        layer = self._stack.pop()
        self._layers.remove(layer)
        self._changed()
        return layer

    @property
    def layers(self):
        return [layer for layer in self._stack if not isinstance(layer, InputLayer)]

    def call(self, inputs, training=None):
        x = inputs
        for layer in self._stack:
            x = layer(x, training=training)
        return x

    def get_config(self):
        return {**super().get_config(),
                "layers": [{"class_name": registered_name(layer), "config": layer.get_config()} for layer in self._stack]}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        layers = [lookup(spec["class_name"], custom_objects).from_config(spec["config"])
                  for spec in config.pop("layers", [])]
        config.pop("input_shape", None)
        return cls(layers, **config)
