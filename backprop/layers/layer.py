"""The Layer base class: weights created in build(), computation in call(), tracking of sublayers."""
import functools
import inspect

from backprop import devices, initializers, regularizers
from backprop.naming import snake_case, unique_name
from backprop.tensor import Tensor, Variable, as_array, placed, structure_version
from backprop.xp import np

FLOAT_DTYPES = ("float16", "float32", "float64")


def float_dtype(dtype, what="layer"):
    """A layer's dtype: one of FLOAT_DTYPES, given as a name, a NumPy type or a dtype (float32 for None).
    Names are checked before NumPy parses them, so a hostile string never reaches NumPy's parser."""
    if dtype is None:
        return np.dtype("float32")
    name = dtype if isinstance(dtype, str) else getattr(np.dtype(dtype), "name", None) \
        if isinstance(dtype, (np.dtype, type)) else None
    if name not in FLOAT_DTYPES:
        raise ValueError(f"{what}: dtype must be one of {', '.join(FLOAT_DTYPES)}, got {dtype!r}")
    return np.dtype(name)


def to_input(value, dtype, layer=None):
    """Layer inputs: tensors pass through; arrays and lists become tensors of the layer's dtype, on the
    layer's device (data given to a model goes where its weights are)."""
    if isinstance(value, Tensor):
        return value
    array = as_array(value)
    if array.dtype != dtype and array.dtype.kind in "iubf":
        array = array.astype(dtype)
    if devices.only_cpu:
        return Tensor._wrap(array)
    if layer is not None and type(array) is np.ndarray:
        return Tensor._wrap(layer.device.to_device(array))
    return Tensor._wrap(placed(array))


class Layer:
    """Subclass and write ``build(input_shape)`` (create weights with ``add_weight``) and ``call(inputs)``."""

    _takes_training = True

    def __init_subclass__(cls, **kwargs):
        """Note whether ``call`` accepts ``training``; make a direct ``layer.build(shape)`` mark the
        layer built, as in Keras."""
        super().__init_subclass__(**kwargs)
        cls._takes_training = "training" in inspect.signature(cls.call).parameters
        if "build" in cls.__dict__:
            build = cls.__dict__["build"]

            @functools.wraps(build)
            def build_once(self, input_shape):
                build(self, input_shape)
                self.built = True
                if getattr(self, "_build_input_shape", None) is None:
                    self._build_input_shape = input_shape

            cls.build = build_once

    def __init__(self, name=None, trainable=True, dtype=None, input_shape=None, input_dim=None):
        object.__setattr__(self, "_layers", [])
        self._weights = []
        self._regularized = []
        self.name = name or unique_name(snake_case(type(self).__name__))
        self._trainable = trainable
        self.dtype = float_dtype(dtype, f"{type(self).__name__} '{self.name}'")
        self._dtype_given = dtype is not None
        self.built = False
        self._build_input_shape = None
        self.input_shape = tuple(input_shape) if input_shape is not None else (
            (input_dim,) if input_dim is not None else None)
        self.output_shape = None

    # --- tracking ---------------------------------------------------------------------
    def __setattr__(self, name, value):
        if isinstance(value, Layer):
            self._track(value, name)
        elif isinstance(value, (list, tuple)):
            for index, item in enumerate(value):
                if isinstance(item, Layer):
                    self._track(item, f"{name}.{index}")
        object.__setattr__(self, name, value)

    def _track(self, layer, key=None):
        """Remember a sublayer; ``key`` (its attribute name) identifies its weights in saved files."""
        layers = self.__dict__.setdefault("_layers", [])  # works before super().__init__() too
        if layer is not self and not any(layer is known for known in layers):
            layers.append(layer)
            structure_version[0] += 1
            if self.__dict__.get("_dtype_given"):
                layer._inherit_dtype(self.dtype)
            self.__dict__.setdefault("_layer_keys", {})[id(layer)] = key or layer.name

    def _inherit_dtype(self, dtype):
        """A model built with dtype="float64" passes it to sublayers that were not given one."""
        if not self._dtype_given and not self.built:
            self.dtype = dtype
            for layer in self._layers:
                layer._inherit_dtype(dtype)

    def _key_of(self, layer):
        return self.__dict__.get("_layer_keys", {}).get(id(layer), layer.name)

    def add_weight(self, shape=None, initializer="glorot_uniform", trainable=True, name=None,
                   regularizer=None, dtype=None):
        """Create, track and return a Variable (name it; ``initializer`` is a name or a callable)."""
        shape = tuple(shape or ())
        dtype = np.dtype(dtype or self.dtype)
        value = initializers.get(initializer)(shape, dtype=dtype)
        variable = Variable(value, dtype=dtype, trainable=trainable and self._trainable,
                            name=name or f"weight_{len(self._weights)}", copy=False)  # the initializer's own array
        variable.path = f"{self.name}/{variable.name}"
        self._weights.append(variable)
        structure_version[0] += 1
        regularizer = regularizers.get(regularizer)
        if regularizer is not None:
            self._regularized.append((regularizer, variable))
        return variable

    @property
    def layers(self):
        return list(self._layers)

    @property
    def device(self):
        """The device the weights live on (the current device before there are any)."""
        variables = self.variables
        return devices.of(variables[0].data) if variables else devices.current()

    def _cached(self, key, compute):
        """``compute()``, remembered until the model's structure changes (see tensor.structure_version)."""
        cache = self.__dict__.setdefault("_cache", {})
        version, value = cache.get(key, (None, None))
        if version != structure_version[0]:
            value = compute()
            cache[key] = (structure_version[0], value)
        return value

    @property
    def variables(self):
        return list(self._cached("variables", self._collect_variables))

    def _collect_variables(self):
        found, seen = list(self._weights), {id(v) for v in self._weights}
        for layer in self._layers:
            for v in layer.variables:
                if id(v) not in seen:
                    seen.add(id(v))
                    found.append(v)
        return found

    weights = variables

    @property
    def trainable_variables(self):
        return list(self._cached("trainable", lambda: [v for v in self.variables if v.trainable]))

    trainable_weights = trainable_variables

    @property
    def non_trainable_variables(self):
        return [v for v in self.variables if not v.trainable]

    non_trainable_weights = non_trainable_variables

    @property
    def trainable(self):
        return self._trainable

    @trainable.setter
    def trainable(self, value):
        """Freeze (False) or unfreeze this layer and everything inside it."""
        self._trainable = bool(value)
        for variable in self._weights:
            variable.trainable = value
        for layer in self._layers:
            layer.trainable = value

    @property
    def losses(self):
        """Regularization penalties of this layer and its sublayers (recorded when on a tape)."""
        return [regularizer(variable) for regularizer, variable in self._cached("regularized", self._all_regularized)]

    def _all_regularized(self):
        pairs = list(self._regularized)
        for layer in self._layers:
            pairs.extend(layer._all_regularized())
        return pairs

    def count_params(self):
        return int(sum(v.size for v in self.variables))

    def get_weights(self):
        return [v.numpy() for v in self.variables]

    def set_weights(self, weights):
        """Assign a list of arrays, in the order of ``variables``; nothing changes if any shape is wrong."""
        variables = self.variables
        weights = list(weights)
        if len(weights) != len(variables):
            raise ValueError(f"{self.name}.set_weights: expected {len(variables)} arrays, got {len(weights)}")
        problems = [f"{v.name}: expected shape {v.shape}, got {np.shape(w)}"
                    for v, w in zip(variables, weights) if tuple(np.shape(w)) != v.shape]
        if problems:
            raise ValueError(f"{self.name}.set_weights: " + "; ".join(problems))
        for variable, value in zip(variables, weights):
            variable.assign(np.asarray(value, dtype=variable.dtype))

    # --- computation ----------------------------------------------------------------
    def build(self, input_shape):
        """Create the weights, knowing the input shape; called once, on first use."""

    def _build_on_first_call(self, input_shape):
        self.build(input_shape)

    def call(self, inputs, training=None):
        raise NotImplementedError(f"{type(self).__name__} must implement call(inputs)")

    def __call__(self, inputs, training=None, **kwargs):
        if not isinstance(inputs, Tensor):
            if isinstance(inputs, np.ndarray):
                inputs = to_input(inputs, self.dtype, self)
            else:
                from backprop.layers import symbolic  # here: symbolic imports this module
                if symbolic.is_symbolic(inputs):  # the functional API: record the call, compute nothing
                    return symbolic.call_symbolically(self, inputs, **kwargs)
                if not isinstance(inputs, (list, tuple, dict)):
                    inputs = to_input(inputs, self.dtype, self)
        if not self.built:
            self._build_input_shape = getattr(inputs, "shape", None)
            self._build_on_first_call(self._build_input_shape)
            self.built = True
        if self._takes_training:
            outputs = self.call(inputs, training=training, **kwargs)
        else:
            outputs = self.call(inputs, **kwargs)
        if self.output_shape is None and isinstance(outputs, Tensor):
            object.__setattr__(self, "output_shape", (None,) + outputs.shape[1:])
        return outputs

    # --- configuration ----------------------------------------------------------------
    def get_config(self):
        config = {"name": self.name, "trainable": self.trainable, "dtype": self.dtype.name}
        if self.input_shape is not None:
            config["input_shape"] = list(self.input_shape)
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name!r}, built={self.built}>"
