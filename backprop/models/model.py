"""Model: a Layer that can be compiled, trained, evaluated, summarized and saved.

Training itself lives in backprop.training; a Model holds what it is trained with (optimizer,
loss, metrics) and its parameters as one flat buffer keyed by weight name.
"""
from backprop import devices, losses, metrics as metrics_module, optimizers, random, training
from backprop.export import onnx
from backprop.layers.layer import Layer, weight_paths
from backprop.models.summary import summary_text
from backprop.parameters import FlatParameters
from backprop.saving import model_file
from backprop.tape import no_grad
from backprop.training import compiled, data
from backprop.xp import np


class Model(Layer):
    """Subclass with ``call(self, inputs, training=None)``, use Sequential, or connect layers from
    ``bp.Input`` and call ``bp.Model(inputs, outputs)`` (the functional API)."""

    _bookkeeping = frozenset({"history", "stop_training", "preprocessing"})

    _from_inputs_and_outputs = None  # the subclass that Model(inputs, outputs) makes: Functional says it is

    def __init_subclass__(cls, made_from_inputs_and_outputs=False, **kwargs):
        super().__init_subclass__(**kwargs)
        if made_from_inputs_and_outputs:
            Model._from_inputs_and_outputs = cls

    def __new__(cls, *args, **kwargs):
        if cls is Model and (len(args) >= 2 or "inputs" in kwargs or "outputs" in kwargs):
            return super().__new__(Model._from_inputs_and_outputs)
        return super().__new__(cls)

    def __init__(self, name=None, trainable=True, dtype=None, **kwargs):
        super().__init__(name=name, trainable=trainable, dtype=dtype, **kwargs)
        self._generator = random.fork()  # fit's shuffling and dropout: this model's own stream
        self.optimizer = None
        self.loss = None
        self.stop_training = False
        self.history = None
        self.preprocessing = None  # how raw table rows become inputs, when backprop train made the model
        self._metric_specs = []

    # --- building -------------------------------------------------------------------
    def build(self, input_shape):
        """Create every weight by running one zero example of ``input_shape`` through the model."""
        shape = tuple(1 if d is None else d for d in input_shape)
        with no_grad():
            Layer.__call__(self, np.zeros(shape, dtype=self.dtype))

    def _build_on_first_call(self, input_shape):
        """Sublayers build themselves lazily: nothing to do at the model level."""

    @property
    def example_shape(self):
        """The shape of one input example, once known (from an Input layer or the first call), else None."""
        if self._build_input_shape is not None:
            return tuple(self._build_input_shape[1:])
        return tuple(self.input_shape) if self.input_shape is not None else None

    @property
    def random_generator(self):
        """The NumPy generator ``fit`` shuffles and drops out from: the model's own, forked from the current
        stream (bp.random) when the model was made, so models training side by side never share a stream."""
        return self._generator

    @property
    def parameters(self):
        """The trainable variables as one FlatParameters keyed by their weight paths (the names model files
        use); rebuilt only when the set of trainable variables changes."""
        return self._cached("parameters", self._current_parameters)

    def _current_parameters(self):
        named = [(name, v) for name, v in weight_paths(self, unique=False) if v.trainable]
        previous = self.__dict__.get("_parameters")
        if previous is not None and previous.holds([v for _, v in named]) and \
                [name for name, _ in named] == previous.names:
            return previous
        self._parameters = FlatParameters(named)
        return self._parameters

    # --- compile -----------------------------------------------------------------------
    def compile(self, optimizer="rmsprop", loss=None, metrics=None, jit_compile="auto"):
        """Choose the optimizer, the loss (name or object) and the metrics ("accuracy", "mse", ...).

        ``jit_compile`` (Keras' flag; True and "auto" alike) makes ``fit`` trace its training step once per
        batch shape and replay the recorded array calls (backprop.training.compiled); a step that cannot be
        replayed faithfully trains eagerly, with a warning. False always trains eagerly."""
        if jit_compile not in (True, False, "auto"):
            raise ValueError(f"compile: jit_compile must be True, False or 'auto', got {jit_compile!r}")
        self.jit_compile = jit_compile
        self.__dict__.pop("_train_steps", None)
        if optimizer is None:
            raise ValueError("compile: an optimizer is required, e.g. optimizer='adam' (the default is 'rmsprop')")
        self.optimizer = optimizers.get(optimizer)
        if loss is None:
            raise ValueError("compile: a loss is required, e.g. loss='mse' or bp.losses.BinaryCrossentropy()")
        self.loss = losses.get(loss)
        losses.check_output_activation(self, self.loss)
        self._metric_specs = list(metrics or [])
        self.new_metrics()  # resolve every name now, as Keras does: an unknown one fails here, not in fit

    def get_compile_config(self):
        """What compile() was given, for model files; None when it holds something unsaveable."""
        if self.loss is None or type(self.loss) not in set(losses.LOSSES.values()):
            return None
        if not all(isinstance(m, str) for m in self._metric_specs) or callable(self.optimizer._learning_rate):
            return None
        optimizer_config = self.optimizer.get_config()
        return {"loss": {"class_name": type(self.loss).__name__, "config": self.loss.get_config()},
                "metrics": list(self._metric_specs),
                "optimizer": {"class_name": type(self.optimizer).__name__, "config": optimizer_config}}

    def compile_from_config(self, config):
        loss_classes = {cls.__name__: cls for cls in losses.LOSSES.values()}
        optimizer_classes = {cls.__name__: cls for cls in optimizers.OPTIMIZERS.values()}
        loss, optimizer = config["loss"], config["optimizer"]
        self.compile(optimizer=optimizer_classes[optimizer["class_name"]](**optimizer["config"]),
                     loss=loss_classes[loss["class_name"]](**loss["config"]), metrics=config["metrics"])

    @property
    def compiled_metrics(self):
        """The metric specifications given to compile (names or Metric objects)."""
        return list(self._metric_specs)

    def check_compiled(self, what):
        if self.loss is None:
            raise RuntimeError(f"{what}: call model.compile(optimizer=..., loss=...) first")

    def new_metrics(self):
        """Metric objects for what compile() asked for, reset: names make new ones, a Metric object given to
        compile is reset and reused (so it can be read after fit); a repeated name gets '_1', '_2' (Keras)."""
        metrics, taken = [], set()
        for spec in self._metric_specs:
            metric = metrics_module.get(spec, self.loss)
            if isinstance(spec, metrics_module.Metric):
                metric.reset_state()
            name, count = metric.name, 0
            while metric.name in taken:
                count += 1
                metric.name = f"{name}_{count}"
            taken.add(metric.name)
            metrics.append(metric)
        return metrics

    def compute_loss(self, y, y_pred, sample_weight=None):
        """The compiled loss plus the regularization penalties of every layer (a tensor)."""
        return self.add_penalties(self.loss(y, y_pred, sample_weight))

    def to(self, device):
        """Move the weights and the optimizer's state to ``device`` ("cpu", "gpu"); returns the model (PyTorch's
        call). Everything moves or nothing does: running out of memory part-way leaves the model where it was.
        Compiled steps are dropped: the next step traces on the new device."""
        target = devices.get(device)
        optimizer = self.optimizer if self.loss is not None else None
        state = optimizer.get_state() if optimizer is not None and optimizer.variables_known else None
        variables = self.variables
        before = [variable.data for variable in variables]
        moved = [target.to_device(array) for array in before]  # may run out of memory: nothing changed yet
        try:
            self._place(variables, moved, optimizer, state)
        except BaseException:
            self._place(variables, before, optimizer, state)
            raise
        return self

    def _place(self, variables, arrays, optimizer, state):
        """The weights become ``arrays``; the optimizer's state (on the host in ``state``) follows them."""
        for variable, array in zip(variables, arrays):
            variable.data = array
        for key in ("_train_steps", "_parameters", "_cache"):
            self.__dict__.pop(key, None)
        if optimizer is not None:
            optimizer.forget_variables()
            if state is not None:
                optimizer.set_state(state, self.parameters)

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_train_steps", None)  # compiled steps hold closures; a copy traces its own
        return state

    def add_penalties(self, loss):
        """``loss`` plus the regularization penalties of every layer."""
        penalties = self.losses
        return loss + sum(penalties[1:], penalties[0]) if penalties else loss

    # --- training and inference: see backprop.training ---------------------------------
    def train_on_batch(self, x, y, sample_weight=None):
        """One gradient step on one batch; returns the loss (before the step)."""
        self.check_compiled("train_on_batch")
        sample_weight = None if sample_weight is None else np.asarray(sample_weight, dtype=self.dtype)
        step = compiled.train_step(self)  # the step fit uses: compiled with jit_compile, as in Keras
        return float(step(data.features(x, self.dtype), data.labels(y), sample_weight).loss)

    def test_on_batch(self, x, y, sample_weight=None):
        self.check_compiled("test_on_batch")
        return float(training.test_step(self, data.features(x, self.dtype), data.labels(y), sample_weight)[0])

    def fit(self, x=None, y=None, batch_size=32, epochs=1, verbose="auto", callbacks=None, validation_split=0.0,
            validation_data=None, shuffle=True, class_weight=None, sample_weight=None, initial_epoch=0,
            steps_per_epoch=None, allow_nonfinite=False):
        """Train for ``epochs`` passes over (x, y); returns a History (``history.history["loss"]``, ...).

        ``batch_size=None`` is full-batch gradient descent. ``validation_split`` holds out the last
        fraction of the data, before shuffling (Keras' rule). Inputs are cast to the model's dtype.
        ``class_weight`` ({class: weight}) multiplies each example's weight; ``steps_per_epoch``
        trains only the first that many batches of each epoch's shuffled order. NaN or infinite
        values in x or y are refused before training unless ``allow_nonfinite=True``.
        """
        return training.Trainer(self).fit(x, y, batch_size=batch_size, epochs=epochs, verbose=verbose,
                                          callbacks=callbacks, validation_split=validation_split,
                                          validation_data=validation_data, shuffle=shuffle,
                                          class_weight=class_weight, sample_weight=sample_weight,
                                          initial_epoch=initial_epoch, steps_per_epoch=steps_per_epoch,
                                          allow_nonfinite=allow_nonfinite)

    def evaluate(self, x=None, y=None, batch_size=32, verbose="auto", sample_weight=None, return_dict=False):
        """Loss (and metrics) over (x, y), with no dropout and nothing recorded; printed unless verbose=0."""
        self.check_compiled("evaluate")
        logs = training.evaluate_logs(self, x, y, sample_weight, batch_size=batch_size, what="")
        if verbose:
            print(" - ".join(f"{k}: {v:.4f}" for k, v in logs.items()))
        if return_dict:
            return logs
        values = list(logs.values())
        return values[0] if len(values) == 1 else values

    def predict(self, x, batch_size=32, verbose=0):
        """Model outputs as a NumPy array, batch by batch, in inference mode."""
        return training.predict(self, x, batch_size=batch_size)

    def predict_on_batch(self, x):
        """Outputs for one batch, in inference mode (a NumPy array)."""
        return training.predict(self, x, batch_size=None)

    @property
    def metrics_names(self):
        """'loss' and the names the compiled metrics log under (Keras)."""
        return ["loss"] + [metric.name for metric in self.new_metrics()] if self.loss is not None else []

    def get_layer(self, name=None, index=None):
        """A layer by its name or by its position in ``model.layers`` (Keras)."""
        layers = self.layers
        if index is not None:
            if not -len(layers) <= index < len(layers):
                raise ValueError(f"get_layer: index {index} is out of range: the model has {len(layers)} layers")
            return layers[index]
        for layer in layers:
            if layer.name == name:
                return layer
        raise ValueError(f"get_layer: no layer named {name!r}; the layers are {', '.join(l.name for l in layers)}")

    # --- inspection and files -----------------------------------------------------------
    def summary(self, print_fn=print):
        """Print each layer's output shape and parameter count, and the totals."""
        print_fn(summary_text(self))

    def save(self, path):
        """Architecture and weights in one file, written atomically (see bp.saving)."""
        model_file.save_model(self, path)

    def save_weights(self, path):
        model_file.save_weights(self, path)

    def export(self, filepath, format="onnx", verbose=False):  # noqa: A002 - Keras' name
        """Write the model's inference computation for another runtime (Keras 3's call); only "onnx" so far.
        The batch dimension is dynamic; an op that cannot be exported is an error naming it and its layer."""
        if format != "onnx":
            raise ValueError(f"export: unknown format {format!r}; backprop exports 'onnx'")
        path = onnx.export(self, filepath)
        if verbose:
            print(f"wrote {path}")
        return path

    def load_weights(self, path):
        model_file.load_weights(self, path)
