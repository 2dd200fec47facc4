"""ONNX export: every layer and activation, checked with onnx.checker and run by onnxruntime."""
import os

import numpy as np
import pytest

import backprop as bp
from backprop import tracing

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

ACTIVATIONS = ["linear", "relu", "sigmoid", "tanh", "softmax", "log_softmax", "gelu", "elu", "leaky_relu",
               "softplus", "swish", "selu", "softsign", "relu6"]


def run_onnx(path, *inputs):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    return session.run(None, dict(zip(names, inputs)))


def assert_matches_predict(model, path, example_shape, dtype=np.float32, batches=(1, 5, 64)):
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    rng = np.random.default_rng(0)
    for batch in batches:
        x = (3 * rng.standard_normal((batch,) + example_shape)).astype(dtype)
        got = run_onnx(path, x)[0]
        want = model.predict(x, batch_size=1000)
        assert got.shape == want.shape and got.dtype == want.dtype
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_dense_with_each_activation(tmp_path, activation):
    model = bp.Sequential([bp.layers.Dense(7, activation=activation, input_shape=(5,)),
                           bp.layers.Dense(3, activation=activation)])
    path = model.export(tmp_path / "model.onnx", format="onnx")
    assert_matches_predict(model, path, (5,))


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_activation_layers_dropout_and_flatten(tmp_path, activation):
    model = bp.Sequential([bp.layers.Flatten(input_shape=(2, 3)), bp.layers.Dense(8), bp.layers.Activation(activation),
                           bp.layers.Dropout(0.5), bp.layers.Dense(2, use_bias=False)])
    path = model.export(tmp_path / "model.onnx")
    assert_matches_predict(model, path, (2, 3))


def test_stop_gradient_exports_as_identity(tmp_path):
    model = bp.Sequential([bp.layers.Dense(4, input_shape=(3,)),
                           bp.layers.Activation(lambda x: bp.stop_gradient(x) * 2.0), bp.layers.Dense(2)])
    assert_matches_predict(model, model.export(tmp_path / "model.onnx"), (3,))


def test_exact_gelu_and_activation_parameters(tmp_path):
    model = bp.Sequential([bp.layers.Dense(6, input_shape=(4,)),
                           bp.layers.Activation(lambda x: bp.ops.gelu(x, approximate=False)),
                           bp.layers.Activation(lambda x: bp.ops.leaky_relu(x, alpha=0.05)),
                           bp.layers.Activation(lambda x: bp.ops.elu(x, alpha=0.5))])
    path = model.export(tmp_path / "model.onnx")
    assert_matches_predict(model, path, (4,))


def test_float64_model(tmp_path):
    model = bp.Sequential([bp.layers.Dense(4, activation="tanh", input_shape=(3,), dtype="float64"),
                           bp.layers.Dense(2, dtype="float64")])
    path = model.export(tmp_path / "model.onnx")
    assert_matches_predict(model, path, (3,), dtype=np.float64)


class Residual(bp.Model):
    """A subclassed model using ops directly: traced through its call."""

    def __init__(self):
        super().__init__()
        self.inner = bp.layers.Dense(6, activation="relu")
        self.back = bp.layers.Dense(6)
        self.head = bp.layers.Dense(3)

    def call(self, inputs, training=None):
        h = self.back(self.inner(inputs)) + inputs * 0.5
        centred = h - bp.ops.mean(h, axis=-1, keepdims=True)
        scale = bp.ops.sqrt(bp.ops.mean(bp.ops.square(centred), axis=1, keepdims=True) + 1e-3)
        joined = bp.ops.concat([centred / scale, bp.ops.maximum(h, 0.0)], axis=1)
        return self.head(joined)


def test_subclassed_model_is_traced(tmp_path):
    model = Residual()
    model(np.zeros((1, 6), np.float32))
    path = model.export(tmp_path / "model.onnx")
    assert_matches_predict(model, path, (6,))


def test_functional_model_with_two_inputs(tmp_path):
    a, b = bp.Input(shape=(3,), name="left"), bp.Input(shape=(2,), name="right")
    shared = bp.layers.Dense(4, activation="tanh")
    outputs = bp.layers.Dense(1)(shared(a))
    model = bp.Model([a, b], outputs)
    path = model.export(tmp_path / "model.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["left", "right"]
    x1, x2 = np.ones((4, 3), np.float32), np.ones((4, 2), np.float32)
    np.testing.assert_allclose(session.run(None, {"left": x1, "right": x2})[0], model([x1, x2]).numpy(), atol=1e-6)


class NumpyEscape(bp.Model):
    def __init__(self):
        super().__init__()
        self.dense = bp.layers.Dense(2)

    def call(self, inputs, training=None):
        doubled = bp.Tensor(inputs.numpy() * 2)  # leaves the ops: a tracer would freeze it as a constant
        return self.dense(inputs) + doubled[:, :2]


class ValueBranch(bp.Model):
    def __init__(self):
        super().__init__()
        self.dense = bp.layers.Dense(2)

    def call(self, inputs, training=None):
        out = self.dense(inputs)
        return bp.ops.relu(out) if float(bp.ops.sum(inputs)) > 0 else bp.ops.tanh(out)


class UnknownOp(bp.Model):
    def __init__(self):
        super().__init__()
        self.dense = bp.layers.Dense(4)

    def call(self, inputs, training=None):
        return self.dense(inputs)[:, 1:]


@pytest.mark.parametrize("model_class, message", [
    (NumpyEscape, r"reads a tensor's values in Python at .*test_export_onnx.py:\d+"),
    (ValueBranch, r"reads a tensor's values in Python at .*test_export_onnx.py:\d+"),
    (UnknownOp, "op 'getitem' in layer 'unknown_op'.*no translation"),
])
def test_unfaithful_exports_are_errors_and_write_nothing(tmp_path, model_class, message):
    model = model_class()
    model(np.ones((1, 3), np.float32))
    path = tmp_path / "model.onnx"
    with pytest.raises(tracing.TraceError, match=message):
        model.export(path)
    assert not os.listdir(tmp_path)


def test_export_needs_a_known_input_shape_and_a_known_format(tmp_path):
    model = bp.Sequential([bp.layers.Dense(2)])
    with pytest.raises(ValueError, match="input shape is unknown"):
        model.export(tmp_path / "m.onnx")
    with pytest.raises(ValueError, match="unknown format 'tflite'"):
        model.export(tmp_path / "m.onnx", format="tflite")


def test_the_file_declares_a_dynamic_batch_and_a_recent_opset(tmp_path):
    model = bp.Sequential([bp.layers.Dense(2, input_shape=(3,))])
    proto = onnx.load(str(model.export(tmp_path / "m.onnx")))
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and dims[1].dim_value == 3
    assert proto.opset_import[0].version >= 18
    assert {i.name for i in proto.graph.initializer} == {f"{model.layers[0].name}/kernel", f"{model.layers[0].name}/bias"}


def test_a_wrong_translation_is_caught_before_writing(tmp_path, monkeypatch):
    from backprop.export import onnx as onnx_export
    monkeypatch.setitem(onnx_export.TRANSLATIONS, "relu", onnx_export.TRANSLATIONS["sigmoid"])
    model = bp.Sequential([bp.layers.Dense(3, input_shape=(2,)), bp.layers.Activation("relu")])
    with pytest.raises(tracing.TraceError, match="computes something other than the model"):
        model.export(tmp_path / "m.onnx")
    assert not os.listdir(tmp_path)


class PrivateEscape(bp.Model):
    """Reaches past the tensor API (.data): only comparing two traces can see the frozen value."""

    def __init__(self):
        super().__init__()
        self.dense = bp.layers.Dense(2)

    def call(self, inputs, training=None):
        return self.dense(inputs) + bp.Tensor(inputs.data[:, :2] * 2)


def test_two_traces_catch_values_computed_outside_the_ops(tmp_path):
    model = PrivateEscape()
    model(np.ones((1, 3), np.float32))
    with pytest.raises(tracing.TraceError, match="computed outside backprop's ops"):
        model.export(tmp_path / "m.onnx")


def test_trace_records_sources_and_layers():
    model = bp.Sequential([bp.layers.Dense(3, activation="relu", input_shape=(2,), name="hidden"),
                           bp.layers.Activation("softmax", name="probs")])
    graph = tracing.trace(lambda x: model(x, training=False), [np.ones((4, 2), np.float32)])
    assert [(n.op, n.layer) for n in graph.nodes] == [("dense", "hidden"), ("softmax", "probs")]
    dense, softmax = graph.nodes
    assert dense.inputs[0] == tracing.Source("input", 0) and dense.inputs[1].value is model.layers[0].kernel
    assert dense.params == {"activation": "relu"} and softmax.inputs == [tracing.Source("node", 0)]
    assert graph.outputs == [tracing.Source("node", 1)] and dense.shape == (4, 3)
