"""Layers and models: the lecture's hand-written layer, Dense, tracking, freezing, dropout, regularizers."""
import math

import numpy as np
import pytest

import backprop as bp
from backprop.lecture.examples.s03_dense_by_hand import MyDenseLayer  # the lecture's layer, as the issue writes it
from gradcheck import check_gradients

pytestmark = pytest.mark.usefixtures("each_device")  # on every device


def test_issue_code_block_runs(tmp_path, capsys):
    layer = bp.layers.Dense(units=2)
    model = bp.Sequential([bp.layers.Dense(3, activation="sigmoid"), bp.layers.Dense(1, activation="sigmoid")])
    y = model(bp.tensor([[4.0, 5.0]]))
    model.summary()
    model.save(tmp_path / "pass_fail.bp")
    same = bp.models.load_model(tmp_path / "pass_fail.bp")
    assert y.shape == (1, 1) and not layer.built
    assert np.array_equal(same(bp.tensor([[4.0, 5.0]])).numpy(), y.numpy())
    text = capsys.readouterr().out
    assert "Total params: 13" in text and "(None, 3)" in text


def test_hand_written_layer_equals_dense():
    x = np.random.default_rng(0).normal(size=(5, 2)).astype(np.float32)
    mine, dense = MyDenseLayer(2, 3), bp.layers.Dense(3, activation="sigmoid")
    dense.build((None, 2))
    dense.set_weights([mine.W.numpy(), mine.b.numpy()[0]])
    outputs, grads = [], []
    for layer in (mine, dense):
        with bp.GradientTape() as tape:
            out = layer(x)
            loss = bp.sum(out * out)
        outputs.append(out.numpy())
        grads.append([g.numpy().reshape(-1) for g in tape.gradient(loss, layer.trainable_variables)])
    np.testing.assert_allclose(outputs[0], outputs[1], rtol=1e-6)
    for a, b in zip(*grads):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("activation", ["elu", "gelu", "softmax", "leaky_relu", "swish"])
def test_dense_with_unfused_activation_gradients(activation):
    layer = bp.layers.Dense(3, activation=activation, dtype="float64")
    layer.build((None, 4))
    w, b = layer.kernel.numpy(), layer.bias.numpy() + 0.1

    def run(x, kernel, bias):
        layer.kernel.assign(kernel.numpy()); layer.bias.assign(bias.numpy())
        return layer.activation(bp.dense(x, kernel, bias))

    check_gradients(run, np.random.default_rng(1).normal(size=(2, 4)), w, b)


def test_dense_shape_error_names_layer_and_shape():
    layer = bp.layers.Dense(2, name="hidden")
    layer(np.ones((3, 4)))
    with pytest.raises(ValueError, match=r"Dense 'hidden' expects last dim 4, got shape \(32, 5\)"):
        layer(np.ones((32, 5)))


def test_unknown_activation_lists_valid_ones():
    with pytest.raises(ValueError, match="unknown activation 'rellu'; valid: sigmoid, tanh, relu"):
        bp.layers.Dense(2, activation="rellu")


class Block(bp.layers.Layer):
    def __init__(self):
        super().__init__()
        self.first = bp.layers.Dense(4)
        self.rest = [bp.layers.Dense(3), bp.layers.Dense(2)]

    def call(self, x):
        x = self.first(x)
        for layer in self.rest:
            x = layer(x)
        return x


class Net(bp.Model):
    def __init__(self):
        super().__init__()
        self.block = Block()
        self.head = bp.layers.Dense(1)

    def call(self, inputs, training=None):
        return self.head(self.block(inputs))


def test_nested_tracking_in_creation_order():
    net = Net()
    net(np.ones((2, 5)))
    shapes = [v.shape for v in net.trainable_variables]
    assert shapes == [(5, 4), (4,), (4, 3), (3,), (3, 2), (2,), (2, 1), (1,)]
    assert net.count_params() == 24 + 15 + 8 + 3


def test_freezing():
    net = Net()
    net(np.ones((2, 5)))
    net.block.trainable = False
    assert len(net.trainable_variables) == 2 and len(net.non_trainable_variables) == 6
    with bp.GradientTape() as tape:
        y = bp.sum(net(np.ones((2, 5))))
    grads = tape.gradient(y, net.variables)
    assert all(g is None for g in grads[:6]) and grads[6] is not None


def test_unfreezing_gives_every_weight_back_to_training():
    net = Net()
    net(np.ones((2, 5)))
    net.block.trainable = 0
    assert net.block.trainable is False
    net.block.trainable = 1
    assert net.block.trainable is True and all(layer.trainable is True for layer in net.block.layers)
    assert len(net.trainable_variables) == 8 and net.non_trainable_variables == []
    assert all(v.trainable for v in net.variables)


def test_set_weights_checks_everything_first():
    layer = bp.layers.Dense(2)
    layer.build((None, 3))
    before = layer.get_weights()
    with pytest.raises(ValueError, match="expected shape"):
        layer.set_weights([np.zeros((3, 2)), np.zeros(5)])
    assert all(np.array_equal(a, b) for a, b in zip(before, layer.get_weights()))


def test_regularization_losses():
    layer = bp.layers.Dense(2, kernel_regularizer=bp.regularizers.L2(0.1))
    layer.build((None, 3))
    w = layer.kernel.numpy()
    assert layer.losses[0].numpy() == pytest.approx(0.1 * np.sum(w ** 2), rel=1e-6)
    model = bp.Sequential([layer, bp.layers.Dense(1, kernel_regularizer=bp.regularizers.L1L2(l1=0.01, l2=0.0))])
    model(np.ones((1, 3)))
    assert len(model.losses) == 2


def test_dropout_training_and_inference():
    bp.random.set_seed(0)
    layer = bp.layers.Dropout(0.5)
    x = np.ones((200, 500), dtype=np.float32)
    assert np.array_equal(layer(x).numpy(), x) and np.array_equal(layer(x, training=False).numpy(), x)
    out = layer(x, training=True).numpy()
    assert set(np.unique(out)) == {0.0, 2.0}
    assert abs(out.mean() - 1.0) < 0.01  # 100k samples: std of the mean is 0.003
    assert abs((out == 0).mean() - 0.5) < 0.01
    with pytest.raises(ValueError, match="rate"):
        bp.layers.Dropout(1.0)


def test_initializers_follow_keras_formulas():
    bp.random.set_seed(0)
    w = bp.initializers.get("glorot_uniform")((300, 200))
    limit = np.sqrt(6 / 500)
    assert np.abs(w).max() <= limit and np.std(w) == pytest.approx(limit / np.sqrt(3), rel=0.02)
    w = bp.initializers.get("he_normal")((400, 300))
    assert np.std(w) == pytest.approx(np.sqrt(2 / 400), rel=0.03) and np.abs(w).max() <= 2 * np.sqrt(2 / 400) / 0.8796 + 1e-6
    assert np.array_equal(bp.initializers.get("zeros")((2,)), [0, 0])
    bp.random.set_seed(5)
    a = bp.Sequential([bp.layers.Dense(3)])(np.ones((1, 2))).numpy()
    bp.random.set_seed(5)
    assert np.array_equal(a, bp.Sequential([bp.layers.Dense(3)])(np.ones((1, 2))).numpy())


def test_input_layer_and_input_shape_build_early(capsys):
    model = bp.Sequential([bp.layers.Input(shape=(4,)), bp.layers.Dense(3), bp.layers.Dense(1)])
    model.summary()
    assert "Total params: 19" in capsys.readouterr().out
    model2 = bp.Sequential([bp.layers.Dense(3, input_shape=(4,)), bp.layers.Dense(1)])
    assert model2.count_params() == 19
    with pytest.raises(ValueError, match="not been built"):
        bp.Sequential([bp.layers.Dense(2)]).summary()


def test_flatten_and_activation_layers():
    model = bp.Sequential([bp.layers.Flatten(), bp.layers.Dense(2), bp.layers.Activation("softmax")])
    out = model(np.ones((3, 2, 2)))
    assert out.shape == (3, 2) and np.allclose(out.numpy().sum(axis=1), 1)


def test_layer_configs_round_trip():
    for layer in [bp.layers.Dense(3, activation="relu", use_bias=False, kernel_regularizer=bp.regularizers.L2(0.5)),
                  bp.layers.Dropout(0.3, seed=1), bp.layers.Activation("tanh"), bp.layers.Flatten(),
                  bp.layers.InputLayer(shape=(2, 3))]:
        config = layer.get_config()
        clone = type(layer).from_config(config)
        assert clone.get_config() == config


def test_model_dtype_reaches_layers_without_their_own():
    model = bp.Sequential([bp.layers.Dense(4), bp.layers.Dense(1, dtype="float32")], dtype="float64")
    model(np.ones((2, 3)))
    assert [v.dtype for v in model.variables] == [np.float64, np.float64, np.float32, np.float32]
    assert bp.Sequential([bp.layers.Dense(2)])(np.ones((1, 3))).dtype == np.float32


ACTIVATION_FORMULAS = {  # written out independently of bp.ops
    "linear": lambda z: z, "relu": lambda z: np.maximum(z, 0), "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
    "tanh": np.tanh, "leaky_relu": lambda z: np.where(z > 0, z, 0.2 * z),
    "elu": lambda z: np.where(z > 0, z, np.exp(z) - 1), "softplus": lambda z: np.log1p(np.exp(z)),
    "gelu": lambda z: 0.5 * z * (1 + np.vectorize(math.erf)(z / np.sqrt(2))),  # exact, as Keras 3's activation
    "swish": lambda z: z / (1 + np.exp(-z)), "silu": lambda z: z / (1 + np.exp(-z)),
    "selu": lambda z: 1.0507009873554805 * np.where(z > 0, z, 1.6732632423543772 * (np.exp(z) - 1)),
    "softsign": lambda z: z / (1 + np.abs(z)), "relu6": lambda z: np.minimum(np.maximum(z, 0), 6),
    "softmax": lambda z: np.exp(z) / np.exp(z).sum(-1, keepdims=True),
    "log_softmax": lambda z: z - np.log(np.exp(z).sum(-1, keepdims=True)),
}


@pytest.mark.parametrize("name", sorted(bp.activations.ACTIVATIONS))
def test_dense_applies_every_activation(name):
    """Fused or not, Dense computes activation(x @ kernel + bias)."""
    assert set(ACTIVATION_FORMULAS) == set(bp.activations.ACTIVATIONS)
    rng = np.random.default_rng(1)
    layer = bp.layers.Dense(4, activation=name, bias_initializer="glorot_uniform", dtype="float64")
    x = rng.normal(size=(6, 3))
    out = layer(x).numpy()
    expected = ACTIVATION_FORMULAS[name](x @ layer.kernel.numpy() + layer.bias.numpy())
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)


def test_a_subclassed_model_lists_its_layers_in_the_order_they_were_set():
    class TwoLayers(bp.Model):
        def __init__(self):
            super().__init__()
            self.hidden, self.out = bp.layers.Dense(4), bp.layers.Dense(1)

        def call(self, inputs):
            return self.out(self.hidden(inputs))

    model = TwoLayers()
    assert model.layers == [model.hidden, model.out]
    model.layers.clear()  # a copy: the model keeps its layers
    assert len(model.layers) == 2


def test_a_layer_with_one_weight_reports_its_device():
    layer = bp.layers.Dense(2, use_bias=False)
    assert layer.device.name == bp.devices.current().name  # unbuilt: the current device
    layer.build((None, 3))
    assert len(layer.variables) == 1 and layer.device.name == layer.kernel.device.name
