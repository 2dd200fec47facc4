"""The Layer base class: weights created in build(), computation in call(), tracking of sublayers.

Every layer has a ``version`` that changes whenever what it computes may change: a public attribute set
to a new value (a Dropout rate, an activation), a weight or sublayer added, ``trainable`` set. The new
version reaches every layer that holds it, so a model's own version says whether its cached variable
lists and its compiled steps still hold; building a layer elsewhere changes nothing here.
"""
import functools
import inspect
import itertools
import weakref

from backprop import devices, initializers, regularizers
from backprop.naming import snake_case, unique_name
from backprop import tracing
from backprop.layers import symbolic
from backprop.tensor import Tensor, Variable, as_array, placed, recordings
from backprop.xp import np

FLOAT_DTYPES = ("float16", "float32", "float64")
_clock = itertools.count(1)  # versions: every change takes the next number, so a holder's newest is the largest


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


def example_shape(shape, what="shape"):
    """The shape of one example as a tuple of positive whole numbers (None: any size); anything else is refused
    naming ``what`` (a -1, 0 or 2.5 reached NumPy's allocator, or was accepted)."""
    try:
        dims = tuple(shape)
    except TypeError:
        raise ValueError(f"{what} must be a tuple of sizes, e.g. (2,), got {shape!r}") from None
    for dim in dims:
        whole = isinstance(dim, (int, np.integer)) and not isinstance(dim, bool)
        if dim is not None and (not whole or dim <= 0):
            raise ValueError(f"{what} must hold positive whole numbers (or None), got {shape!r}")
    return tuple(None if d is None else int(d) for d in dims)


_MISSING = object()


def _call(reference):
    return reference()


def _differs(old, new):
    """Whether setting an attribute from ``old`` to ``new`` is a change (equal numbers and strings are not)."""
    if old is new:
        return False
    simple = (bool, int, float, str, type(None))
    return not (type(old) is type(new) and isinstance(new, simple) and old == new)


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
    _version = 0
    _bookkeeping = frozenset()  # attributes that record what happened, not what is computed: no new version

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
        self.input_shape = example_shape(input_shape, f"{type(self).__name__} input_shape") if input_shape is not None \
            else example_shape((input_dim,), f"{type(self).__name__} input_dim") if input_dim is not None else None
        self.output_shape = None

    # --- tracking ---------------------------------------------------------------------
    def __setattr__(self, name, value):
        if isinstance(value, Layer):
            self._track(value, name)
        elif isinstance(value, (list, tuple)):
            for index, item in enumerate(value):
                if isinstance(item, Layer):
                    self._track(item, f"{name}.{index}")
        if not name.startswith("_") and name not in self._bookkeeping and \
                not isinstance(getattr(type(self), name, None), property) and _differs(self.__dict__.get(name, _MISSING), value):
            self._changed()
        object.__setattr__(self, name, value)

    @property
    def version(self):
        """Changes whenever this layer or a layer inside it may compute something else (see the module docstring)."""
        return self._version

    def _changed(self):
        """A new version for this layer and every layer holding it."""
        version, pending, seen = next(_clock), [self], set()
        while pending:
            layer = pending.pop()
            if id(layer) not in seen:
                seen.add(id(layer))
                object.__setattr__(layer, "_version", version)
                pending.extend(holder for holder in map(_call, layer.__dict__.get("_holders", ())) if holder is not None)

    def __getstate__(self):  # a copy's holders register again as it is rebuilt (weak references don't copy)
        state = dict(self.__dict__)
        state.pop("_holders", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        for layer in self.__dict__.get("_layers", ()):
            layer.__dict__.setdefault("_holders", []).append(weakref.ref(self))

    def _track(self, layer, key=None):
        """Remember a sublayer; ``key`` (its attribute name) identifies its weights in saved files."""
        layers = self.__dict__.setdefault("_layers", [])  # works before super().__init__() too
        if layer is not self and not any(layer is known for known in layers):
            layers.append(layer)
            holders = layer.__dict__.setdefault("_holders", [])
            holders[:] = [holder for holder in holders if holder() is not None] + [weakref.ref(self)]
            self._changed()
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
        variable.path, variable.owner = f"{self.name}/{variable.name}", self
        self._weights.append(variable)
        self._changed()
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
        """``compute()``, remembered until this layer's version changes (a weight frozen or unfrozen changes it)."""
        cache = self.__dict__.setdefault("_cache", {})
        version, value = cache.get(key, (None, None))
        now = self._version
        if version != now:
            value = compute()
            cache[key] = (now, value)
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
        self._changed()
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
                if symbolic.is_symbolic(inputs):  # the functional API: record the call, compute nothing
                    return symbolic.call_symbolically(self, inputs, **kwargs)
                if not isinstance(inputs, (list, tuple, dict)):
                    inputs = to_input(inputs, self.dtype, self)
        recorder = tracing.current.get() if recordings[0] else None
        if recorder is None:
            outputs = self._build_and_call(inputs, training, kwargs)
        else:
            with recorder.inside(self):  # a recording depends on what this layer is now
                outputs = self._build_and_call(inputs, training, kwargs)
        if self.output_shape is None and isinstance(outputs, Tensor):
            object.__setattr__(self, "output_shape", (None,) + outputs.shape[1:])
        return outputs

    def _build_and_call(self, inputs, training, kwargs):
        if not self.built:
            self._build_input_shape = getattr(inputs, "shape", None)
            self._build_on_first_call(self._build_input_shape)
            self.built = True
        if self._takes_training:
            return self.call(inputs, training=training, **kwargs)
        return self.call(inputs, **kwargs)

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


def weight_paths(layer, prefix="", unique=True):
    """(path, variable) pairs in the order of ``layer.variables``: 'dense/kernel' in a Sequential (layer
    names, which the config keeps), 'block/hidden/bias' in a subclassed model (attribute names).
    A name used twice is an error unless ``unique`` is False."""
    pairs, seen = [], set()

    def walk(current, path):
        for variable in current._weights:
            if id(variable) not in seen:
                seen.add(id(variable))
                pairs.append((f"{path}{variable.name}", variable))
        for sublayer in current._layers:
            walk(sublayer, f"{path}{current._key_of(sublayer)}/")

    walk(layer, prefix)
    names = [name for name, _ in pairs]
    if unique and len(set(names)) != len(names):
        duplicates = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"cannot save: several weights are named {', '.join(duplicates)}; give layers unique names")
    return pairs
