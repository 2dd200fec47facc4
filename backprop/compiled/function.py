"""``@bp.function``: TensorFlow's ``tf.function`` contract on backprop's tracer.

The first call for an input signature runs the function eagerly while recording every op, every
``tape.gradient`` and every optimizer or metric update (backprop.tracing); later calls with that
signature replay the recording as plain array calls (backprop.compiled.plan). A signature is the shape
and dtype of each tensor or array argument plus the value of every other argument (a new Python value
traces again, as in TensorFlow); an object argument (``self`` of a decorated method, a model) counts by
identity, held weakly: its recordings go when it does, and never serve another object. A recording also
holds only while every layer it called keeps its version (a Dropout rate set, a layer frozen: traced
again) and no variable's trainable flag changed. Python side effects of the function (printing, appending to a list)
happen while tracing only, as in TensorFlow. Reading a tensor's values in Python inside the function
(``.numpy()``, ``float()``, an ``if`` on a tensor) would freeze them into the recording, so the trace
raises TraceError naming the line instead.
"""
import collections
import functools
import weakref

from backprop import devices
from backprop.compiled.plan import Plan
from backprop.tensor import Tensor, Variable, placed, trainable_version
from backprop.tracing import Graph, Recorder, TraceError, recording
from backprop.xp import np


class Function:
    """A traced function; see the module docstring. ``max_signatures`` bounds the cache (oldest out)."""

    def __init__(self, fn, max_signatures=8):
        functools.update_wrapper(self, fn)
        self.python_function = fn
        self.max_signatures = max_signatures
        self._plans = collections.OrderedDict()  # key -> (plan, output template, [(layer ref, version)])
        self._keys_of = collections.defaultdict(set)  # id of an object argument -> the keys naming it
        self._tracing_count = 0

    def __call__(self, *args, **kwargs):
        if not kwargs and all(type(a) is Tensor or type(a) is np.ndarray for a in args):  # the usual call
            arrays = [a.data if type(a) is Tensor else placed(a) for a in args]  # NumPy data: the current device
            key = (tuple((a.shape, a.dtype.str) for a in arrays), trainable_version[0])
        else:
            arrays, objects = [], []
            key = (_spec((args, kwargs), arrays, objects), trainable_version[0])
            self._hold_weakly(key, objects)
        entry = self._plans.get(key)
        if entry is None or not _still_valid(entry[2]):
            return self._trace(key, args, kwargs, arrays)
        self._plans.move_to_end(key)
        plan, output_template, _ = entry
        return _rebuild(output_template, plan.run(arrays))

    def _hold_weakly(self, key, objects):
        """Forget the recordings of a key when an object it names is collected (its id may then be reused)."""
        for obj in objects:
            if id(obj) not in self._keys_of:
                weakref.finalize(obj, self._forget, id(obj))
            self._keys_of[id(obj)].add(key)

    def _forget(self, object_id):
        for key in self._keys_of.pop(object_id, ()):
            self._plans.pop(key, None)

    def __get__(self, instance, owner):  # a decorated method binds like a function
        return self if instance is None else functools.partial(self, instance)

    def experimental_get_tracing_count(self):
        """How many times the function was traced (TensorFlow's name)."""
        return self._tracing_count

    @property
    def cache_size(self):
        return len(self._plans)

    def _trace(self, key, args, kwargs, arrays):
        recorder = Recorder(Graph([]))
        placeholders = iter([recorder.add_input(a) for a in arrays])
        args, kwargs = _substitute((args, kwargs), placeholders)
        with recording(recorder):
            outputs = self.python_function(*args, **kwargs)
        self._tracing_count += 1
        tensors = []
        output_template = _outputs(outputs, tensors)
        recorder.set_outputs(tensors)
        layers = {id(layer): layer for layer in recorder.layers_called}.values()
        self._plans[key] = (Plan(recorder.graph), output_template,
                            [(weakref.ref(layer), layer.version) for layer in layers])
        self._plans.move_to_end(key)
        while len(self._plans) > self.max_signatures:
            self._plans.popitem(last=False)
        return outputs


def function(fn=None, *, max_signatures=8, jit_compile=None, reduce_retracing=None):
    """Decorator: ``@bp.function`` or ``@bp.function(max_signatures=4)``. TensorFlow's ``jit_compile`` and
    ``reduce_retracing`` are accepted and change nothing: every function is replayed the same way."""
    if fn is None:
        return lambda f: Function(f, max_signatures)
    return Function(fn, max_signatures)


# --- arguments and outputs -----------------------------------------------------------------------------
def _is_array(value):
    return isinstance(value, devices.array_types) or (isinstance(value, Tensor) and not isinstance(value, Variable))


def _still_valid(layer_versions):
    for ref, version in layer_versions:
        layer = ref()
        if layer is None or layer.version != version:
            return False
    return True


def _spec(value, arrays, objects):
    """A hashable description of the arguments; their tensors and arrays are appended to ``arrays``, the
    objects that count by identity to ``objects``."""
    if _is_array(value):
        array = value.data if isinstance(value, Tensor) else placed(value)
        arrays.append(array)
        return ("array", array.shape, array.dtype.str)
    if isinstance(value, (list, tuple)):
        return (type(value).__name__,) + tuple(_spec(v, arrays, objects) for v in value)
    if isinstance(value, dict):
        return ("dict",) + tuple((k, _spec(v, arrays, objects))
                                 for k, v in sorted(value.items(), key=lambda kv: str(kv[0])))
    if isinstance(value, Variable) or not _hashable(value) or type(value).__hash__ is object.__hash__:
        if _weakly_referable(value):
            objects.append(value)
            return ("object", id(value))
        return ("value", type(value).__name__, value) if _hashable(value) else ("object", id(value))
    return ("value", type(value).__name__, value)


def _weakly_referable(value):
    try:
        weakref.ref(value)
    except TypeError:
        return False
    return True


def _hashable(value):
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _substitute(value, placeholders):
    """The arguments with each tensor or array replaced by the next placeholder."""
    if _is_array(value):
        return next(placeholders)
    if isinstance(value, (list, tuple)):
        return type(value)(_substitute(v, placeholders) for v in value)
    if isinstance(value, dict):
        return {k: _substitute(v, placeholders) for k, v in value.items()}
    return value


def _outputs(value, tensors):
    if isinstance(value, Tensor):
        tensors.append(value)
        return ("tensor", len(tensors) - 1)
    if isinstance(value, (list, tuple)):
        return (type(value), [_outputs(v, tensors) for v in value])
    if isinstance(value, dict):
        return (dict, {k: _outputs(v, tensors) for k, v in value.items()})
    if value is None:
        return ("none",)
    raise TraceError(f"bp.function: the function returned {type(value).__name__} {value!r}; a traced function "
                     "returns tensors (or lists, tuples and dicts of them) so that a replay can compute them")


def _rebuild(template, arrays):
    kind = template[0]
    if kind == "tensor":
        return Tensor._wrap(arrays[template[1]])
    if kind == "none":
        return None
    if kind is dict:
        return {k: _rebuild(v, arrays) for k, v in template[1].items()}
    return kind(_rebuild(v, arrays) for v in template[1])
