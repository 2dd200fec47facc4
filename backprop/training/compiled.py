"""The compiled training step: ``fit`` with ``jit_compile`` traces TrainStep once per input signature and
replays the recorded ops (backprop.compiled.plan) on every later batch of that signature.

A signature is the shapes and dtypes of x, y and the sample weights, plus the model's version (any
change to its layers: a Dropout rate, a frozen layer, a new weight) and which variables are trainable.
Its first batch runs eagerly while recording; its second batch runs eagerly again and the two
recordings must agree (same ops, same parameters, same constants: a value computed outside the ops
from the data would differ); from the third batch on it is replayed. Anything that
cannot be replayed faithfully makes the model train eagerly, with one warning. The labels are turned
into what the loss kernel takes (``Loss.kernel_labels``) before the replay, since that is a function
of the labels and of the predictions' shape alone.
"""
import collections

from backprop import devices, losses, tape as tape_module
from backprop.compiled.plan import Plan
from backprop.ops import op as op_module
from backprop.tape import GradientTape
from backprop.tracing import Graph, Recorder, TraceError, recording, same_computation
from backprop.training import data
from backprop.training.step import TrainStep
from backprop.devices import asarray
from backprop.xp import np
from backprop.user_warnings import warn


class _Signature:
    """What one input signature has learnt: its recordings, then its plan."""

    __slots__ = ("graph", "plan", "prediction", "state", "on_host")

    def __init__(self):
        self.graph = self.plan = self.prediction = None
        self.state = None  # (parameters, optimizer): the model's, which stay while its version does (a key part)
        self.on_host = False  # whether the model's weights were on the CPU when the plan was made (Model.to drops
        #                       compiled steps, so they stay there while the plan does)


class CompiledTrainStep(TrainStep):
    """TrainStep with replay; see the module docstring. ``max_signatures`` bounds the cache (oldest out)."""

    def __init__(self, model, guard_nonfinite=False, reduce_gradients=None, max_signatures=8):
        super().__init__(model, guard_nonfinite, reduce_gradients)
        self.max_signatures = max_signatures
        self.signatures = collections.OrderedDict()
        self.tracing_count = self.replays = self.unreplayed = 0
        self.fallback = None  # why the model trains eagerly, once it does

    def __call__(self, x, y, sample_weight=None):
        if self.fallback is None and not self.model.loss.replayable:
            self._fall_back(f"the loss {self.model.loss.name!r} computes in Python around its kernel")
        if self.fallback is not None or op_module.monitors.get() or tape_module.gradient_monitors.get():
            return super().__call__(x, y, sample_weight)
        key = (_described(x), _described(y), None if sample_weight is None else _described(sample_weight),
               self.model._version)  # (an array's shape and dtype are the same on the host and on a device)
        signature = self.signatures.get(key)
        if signature is None:
            signature = self.signatures[key] = _Signature()
            while len(self.signatures) > self.max_signatures:
                if self.signatures.popitem(last=False)[1].plan is None:
                    self.unreplayed += 1
            if self.unreplayed > self.max_signatures:
                self._fall_back(f"the model changed at every step ({self.tracing_count} traces, none replayed): a "
                                "layer attribute set during the step changes its version (see Layer.version)")
                return super().__call__(x, y, sample_weight)
        if signature.plan is None or not (signature.on_host and type(x) is np.ndarray):
            x, sample_weight = data.to_model_device(self.model, x, sample_weight)  # labels: the loss moves them
        if signature.plan is None:
            return self._traced(signature, x, y, sample_weight)
        self.signatures.move_to_end(key)
        self.replays += 1
        return self._replayed(signature, x, y, sample_weight)

    def info(self):
        """What the step has done: traces, replays, cached signatures (bounded) and why it fell back, if it did."""
        plans = [signature.plan for signature in self.signatures.values() if signature.plan is not None]
        return {"tracing_count": self.tracing_count, "replays": self.replays, "cache_size": len(self.signatures),
                "max_signatures": self.max_signatures, "fallback": self.fallback,
                "compile_seconds": sum(plan.compile_seconds() for plan in plans)}

    def _replayed(self, signature, x, y, sample_weight):
        labels = self.model.loss.prepared_labels(y, signature.prediction)  # checks of predictions: not on a stand-in
        inputs = [x, labels] if sample_weight is None else [x, labels, sample_weight]
        loss, y_pred, grads = signature.plan.run(inputs)
        return self.update(grads, loss, y_pred, signature.state)

    def _traced(self, signature, x, y, sample_weight):
        """One eager step, recorded; the second recording of a signature becomes its plan."""
        model = self.model
        recorder = Recorder(Graph([]), strict=False)
        with recording(recorder):
            with GradientTape() as tape:
                x_in = recorder.add_input(x)
                y_pred = model(x_in, training=True)
                labels = model.loss.kernel_labels(y, y_pred)
                labels_in = recorder.add_input(labels)
                weights_in = None if sample_weight is None else recorder.add_input(sample_weight)
                loss = model.add_penalties(model.loss.from_kernel_labels(labels_in, y_pred, weights_in))
            params = model.parameters
            grads = tape.gradient(loss, params.variables)
        self.tracing_count += 1
        problem = recorder.problem
        if problem is None:
            try:
                recorder.set_outputs([loss, y_pred, recorder.last_gradient])
            except TraceError as error:
                problem = str(error)
        recorder.keep_alive.clear()  # the recording's tensors go before the update, as the tape's do
        result = self.update(grads, loss.data, y_pred.data)
        try:
            if problem is not None:
                raise TraceError(problem)
            self._learn(signature, recorder.graph, y_pred)
        except TraceError as error:
            self._fall_back(str(error))
        return result

    def _learn(self, signature, graph, y_pred):
        if signature.graph is None:
            signature.graph = graph
            return
        same_computation(signature.graph, graph)
        params = self.model.parameters
        signature.plan = Plan(graph, gradients_into=dict(zip(map(id, params.variables), params.gradient_views())))
        signature.prediction = losses.stand_in(y_pred)
        signature.state = (self.model.parameters, self.model.optimizer)
        signature.on_host = self.model.device is devices.CPU
        signature.graph = None

    def _fall_back(self, reason):
        self.fallback = reason
        warn(f"fit: training eagerly, this model's step cannot be compiled: {reason}")


def _described(array):
    """(shape, dtype) of a batch's array, the part of a signature it decides."""
    if type(array) is np.ndarray:
        return array.shape, array.dtype
    return np.shape(array), asarray(array).dtype


def train_step(model, guard_nonfinite=False):
    """The step ``fit`` uses: compiled unless ``compile(jit_compile=False)``, and kept on the model between
    fits (as Keras keeps its train function) until the next ``compile``."""
    if not getattr(model, "jit_compile", False):
        return TrainStep(model, guard_nonfinite)
    steps = model.__dict__.setdefault("_train_steps", {})
    if guard_nonfinite not in steps:
        steps[guard_nonfinite] = CompiledTrainStep(model, guard_nonfinite)
    return steps[guard_nonfinite]


def step_info(model):
    """``info()`` of each compiled step ``fit`` has used on ``model`` since its last ``compile``, by whether it
    guards against non-finite updates (TerminateOnNaN)."""
    return {guard: step.info() for guard, step in model.__dict__.get("_train_steps", {}).items()}
