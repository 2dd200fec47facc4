"""TwoInputFeatures: the TensorFlow Playground's input features as a layer.

The playground trains on two raw inputs standardised with their data's mean and spread, then turned
into the features the page ticks (x1, x2, x1², x2², x1·x2, sin x1, sin x2). As a layer, with the
statistics in its config, a downloaded model takes the raw two columns that ``backprop predict``
reads from a table, and computes the rest itself.
"""
from backprop import ops
from backprop.layers.layer import Layer

FEATURES = ("x1", "x2", "x1^2", "x2^2", "x1*x2", "sin(x1)", "sin(x2)")


class TwoInputFeatures(Layer):
    """(batch, 2) raw inputs -> (batch, len(features)): standardised with ``shift`` and ``scale``, then each
    feature named in ``features``."""

    def __init__(self, features, shift=(0.0, 0.0), scale=(1.0, 1.0), **kwargs):
        super().__init__(**kwargs)
        unknown = [f for f in features if f not in FEATURES]
        if unknown or not features or len(shift) != 2 or len(scale) != 2 or any(s <= 0 for s in scale):
            raise ValueError(f"TwoInputFeatures: features from {', '.join(FEATURES)} (got {list(features)}), two "
                             f"shifts and two positive scales (got {list(shift)}, {list(scale)})")
        self.features = list(features)
        self.shift, self.scale = [float(v) for v in shift], [float(v) for v in scale]

    def call(self, inputs):
        a = (inputs[:, 0:1] - self.shift[0]) / self.scale[0]
        b = (inputs[:, 1:2] - self.shift[1]) / self.scale[1]
        made = {"x1": lambda: a, "x2": lambda: b, "x1^2": lambda: a * a, "x2^2": lambda: b * b,
                "x1*x2": lambda: a * b, "sin(x1)": lambda: ops.sin(a), "sin(x2)": lambda: ops.sin(b)}
        columns = [made[name]() for name in self.features]
        return ops.concat(columns, axis=1) if len(columns) > 1 else columns[0]

    def get_config(self):
        return {**super().get_config(), "features": self.features, "shift": self.shift, "scale": self.scale}
