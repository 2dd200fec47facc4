"""The lecture's TensorFlow code blocks, transcribed from the slides, run unchanged on backprop.compat.tensorflow.

Each block is kept as the slide has it (comments included); what the slide leaves undefined (x, y, n,
compute_loss, lr) is set up around it, and `while True` loops run a fixed number of times.
"""
import numpy as np
import pytest

import backprop as bp
import backprop.compat.tensorflow as tf

rng = np.random.default_rng(0)
x = rng.normal(size=(16, 3)).astype(np.float32)
y_onehot = np.eye(2, dtype=np.float32)[(x[:, 0] > 0).astype(int)]


def test_the_dense_layer_written_by_hand():
    class MyDenseLayer(tf.keras.layers.Layer):
        def __init__(self, input_dim, output_dim):
            super(MyDenseLayer, self).__init__()

            # Initialize weights and bias
            self.W = self.add_weight([input_dim, output_dim])
            self.b = self.add_weight([1, output_dim])

        def call(self, inputs):
            # Forward propagate the inputs
            z = tf.matmul(inputs, self.W) + self.b

            # Feed through a non-linear activation
            output = tf.math.sigmoid(z)

            return output

    layer = MyDenseLayer(3, 2)
    out = layer(x)
    expected = 1 / (1 + np.exp(-(x @ layer.W.numpy() + layer.b.numpy())))
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-6)
    assert len(layer.trainable_variables) == 2


def test_dense_and_sequential_models():
    n, n1, n2, nk = 4, 5, 6, 3
    layer = tf.keras.layers.Dense(units=2)

    model = tf.keras.Sequential([
        tf.keras.layers.Dense(n),
        tf.keras.layers.Dense(2)
    ])

    deep = tf.keras.Sequential([
        tf.keras.layers.Dense(n1),
        tf.keras.layers.Dense(n2),
        tf.keras.layers.Dense(nk),
        tf.keras.layers.Dense(2)
    ])
    assert layer(x).shape == (16, 2) and model(x).shape == (16, 2) and deep(x).shape == (16, 2)
    assert len(deep.trainable_variables) == 8


def test_the_losses():
    y = y_onehot
    predicted = tf.keras.Sequential([tf.keras.layers.Dense(2)])(x)
    loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(y, predicted))
    logits = predicted.numpy()
    log_p = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    assert float(loss) == pytest.approx(float(-(y * log_p).sum(1).mean()), rel=1e-6)

    loss = tf.reduce_mean(tf.square(tf.subtract(y, predicted)))
    assert float(loss) == pytest.approx(float(((y - logits) ** 2).mean()), rel=1e-6)
    loss = tf.keras.losses.MSE(y, predicted)
    np.testing.assert_allclose(loss.numpy(), ((y - logits) ** 2).mean(1), rtol=1e-6)


def test_the_gradient_descent_loop():
    lr = 0.1

    def compute_loss(weights):
        return tf.reduce_sum(tf.square(weights - 3.0))

    weights = tf.Variable([tf.random.normal(())])
    start = float(weights.numpy()[0])
    steps = 0
    with pytest.raises(ValueError, match="assign_sub"):  # what TensorFlow answers with None, backprop explains
        while True:  # loop forever (here: until the slide's rebinding turns weights into a plain tensor)
            with tf.GradientTape() as g:
                loss = compute_loss(weights)
            gradient = g.gradient(loss, weights)

            weights = weights - lr * gradient
            steps += 1
    assert steps == 1 and float(weights.numpy()[0]) == pytest.approx(start - lr * 2 * (start - 3.0), abs=1e-6)  # float32 steps: cancellation near 0


def test_the_optimizers_and_the_training_loop():
    for optimizer_class in (tf.keras.optimizers.SGD, tf.keras.optimizers.Adam, tf.keras.optimizers.Adadelta,
                            tf.keras.optimizers.Adagrad, tf.keras.optimizers.RMSprop):
        assert isinstance(optimizer_class(), bp.optimizers.Optimizer)
    model = tf.keras.Sequential([tf.keras.layers.Dense(8, activation="relu"), tf.keras.layers.Dense(2)])
    optimizer = tf.keras.optimizers.SGD(0.1)

    def compute_loss(y, prediction):
        return tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(y, prediction))
    y = y_onehot
    losses = []
    for _ in range(30):  # while True:
        # forward pass through the network
        with tf.GradientTape() as tape:
            prediction = model(x)
            # compute the loss
            loss = compute_loss(y, prediction)
        # update the weights using the gradient
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        losses.append(float(loss))
    assert losses[-1] < 0.7 * losses[0]


def test_dropout_and_early_stopping():
    tf.keras.layers.Dropout(p=0.5)
    model = tf.keras.Sequential([tf.keras.layers.Dense(8, activation="relu"), tf.keras.layers.Dropout(rate=0.5),
                                 tf.keras.layers.Dense(2)])
    model.compile(optimizer="adam", loss=tf.keras.losses.CategoricalCrossentropy(from_logits=True))
    history = model.fit(x, y_onehot, epochs=50, verbose=0, validation_split=0.25,
                        callbacks=[tf.keras.callbacks.EarlyStopping(monitor="val_loss", patience=2)])
    assert 3 <= len(history.history["loss"]) <= 50
    with pytest.raises(TypeError, match="rate= \\(or the slides' p=\\)"):
        tf.keras.layers.Dropout()


def test_the_map_is_backprop_itself():
    assert tf.keras.layers.Dense is bp.layers.Dense and tf.matmul is bp.matmul and tf.GradientTape is bp.GradientTape
    with pytest.raises(AttributeError, match="keras.layers"):
        tf.keras.layers.Conv2D


# --- the lecture's classic mistakes, answered with the fix -------------------------------------------------
def fit_warnings(final_activation, loss, y):
    import warnings
    model = bp.Sequential([bp.layers.Dense(y.shape[1] if y.ndim > 1 else 1, activation=final_activation,
                                           input_shape=(3,))])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.compile(optimizer="sgd", loss=loss)
        model.fit(x, y, epochs=3, batch_size=8, verbose=0)
    return [str(w.message) for w in caught if "from_logits" in str(w.message)]


@pytest.mark.parametrize("activation, loss, y, expected", [
    ("sigmoid", bp.losses.BinaryCrossentropy(from_logits=True), y_onehot[:, :1], "applies sigmoid"),
    ("softmax", bp.losses.CategoricalCrossentropy(from_logits=True), y_onehot, "applies softmax"),
    (None, bp.losses.CategoricalCrossentropy(), y_onehot, "look like raw logits"),
    (None, bp.losses.BinaryCrossentropy(), y_onehot[:, :1], "Build the loss with from_logits=True"),
    ("softmax", bp.losses.CategoricalCrossentropy(), y_onehot, None),
    (None, bp.losses.CategoricalCrossentropy(from_logits=True), y_onehot, None),
    ("sigmoid", bp.losses.BinaryCrossentropy(), y_onehot[:, :1], None),
])
def test_outputs_of_the_wrong_kind_for_from_logits_warn_once(activation, loss, y, expected):
    messages = fit_warnings(activation, loss, y)
    if expected is None:
        assert messages == []
    else:
        assert len(messages) == 1 and expected in messages[0]


def test_one_loss_object_checks_each_model_it_is_compiled_into():
    loss = bp.losses.BinaryCrossentropy()
    for model in range(2):
        messages = fit_warnings(None, loss, y_onehot[:, :1])
        assert len(messages) == 1 and "Build the loss with from_logits=True" in messages[0]


def test_softmax_values_reach_a_logits_loss_through_a_layer_of_their_own():
    model = bp.Sequential([bp.layers.Dense(2, input_shape=(3,)), bp.layers.Activation(lambda t: bp.ops.softmax(t))])
    import warnings
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.compile(optimizer="sgd", loss=bp.losses.CategoricalCrossentropy(from_logits=True))
        model.fit(x, y_onehot, epochs=2, batch_size=8, verbose=0)
    messages = [str(w.message) for w in caught if "from_logits" in str(w.message)]
    assert len(messages) == 1 and "look like probabilities" in messages[0]


def test_the_slides_ordering_mistake_names_the_fix():
    model = tf.keras.Sequential([tf.keras.layers.Dense(2)])
    optimizer = tf.keras.optimizers.SGD()
    prediction = model(x)  # the slide's order: the forward pass before the tape
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(y_onehot, prediction))
    grads = tape.gradient(loss, model.trainable_variables)
    with pytest.raises(ValueError, match="forward pass ran before the tape, move it inside"):
        optimizer.apply_gradients(zip(grads, model.trainable_variables))


# --- the same blocks in TensorFlow itself, where it is installed (never a dependency) --------------------------
def test_numbers_match_tensorflow():
    real = pytest.importorskip("tensorflow")
    weights = [rng.normal(size=(3, 8)).astype(np.float32), np.zeros(8, np.float32),
               rng.normal(size=(8, 2)).astype(np.float32), np.zeros(2, np.float32)]

    def train(framework):
        model = framework.keras.Sequential([framework.keras.layers.Dense(8, activation="relu"),
                                            framework.keras.layers.Dense(2)])
        model(x[:1])
        model.set_weights(weights)
        optimizer = framework.keras.optimizers.SGD(0.1)
        losses = []
        for _ in range(30):
            with framework.GradientTape() as tape:
                prediction = model(x)
                loss = framework.reduce_mean(framework.nn.softmax_cross_entropy_with_logits(y_onehot, prediction))
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
            losses.append(float(loss))
        mse = framework.keras.losses.MSE(y_onehot, model(x))
        return losses, [np.asarray(w) for w in model.get_weights()], np.asarray(mse)

    ours, theirs = train(tf), train(real)
    np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-5)
    for a, b in zip(ours[1], theirs[1]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(ours[2], theirs[2], rtol=1e-5)


def test_function_losses_reduce_the_last_axis_as_tensorflow_does():
    """tf.keras.losses.MSE on 1-D tensors is one number (the mean over the last axis): 62.5, not [100, 25].
    Values written out from TensorFlow's formulas."""
    y, p = tf.constant([0.0, 0.0]), tf.constant([10.0, 5.0])
    assert float(tf.keras.losses.MSE(y, p)) == 62.5 and float(tf.keras.losses.mae(y, p)) == 7.5
    bce = tf.keras.losses.binary_crossentropy(tf.constant([0.0, 1.0]), tf.constant([0.2, 0.7]))
    assert float(bce) == pytest.approx((-np.log(0.8) - np.log(0.7)) / 2, rel=1e-6)
    rows = tf.keras.losses.MSE(tf.constant([[0.0, 0.0], [1.0, 1.0]]), tf.constant([[10.0, 5.0], [1.0, 3.0]]))
    np.testing.assert_allclose(rows.numpy(), [62.5, 2.0])  # one per row, as before


def test_ones_zeros_and_the_softmax_layer(tmp_path):
    assert tf.ones((2, 3)).numpy().tolist() == [[1.0] * 3] * 2 and tf.ones((2,)).dtype == np.float32
    assert tf.zeros((1, 2), dtype=tf.float64).dtype == np.float64
    assert tf.zeros_like(tf.constant([[1.0, 2.0]])).shape == (1, 2) and tf.ones_like(np.ones(3)).dtype == np.float64
    assert tf.zeros_like([1, 2], dtype=tf.float64).dtype == np.float64 and tf.ones_like([[1, 2]]).dtype == np.float32
    model = tf.keras.Sequential([tf.keras.layers.Input(shape=(3,)), tf.keras.layers.Dense(4),
                                 tf.keras.layers.Softmax()])
    probabilities = model(np.ones((2, 3), np.float32)).numpy()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-6)
    model.save(tmp_path / "m.bp")
    np.testing.assert_array_equal(bp.models.load_model(tmp_path / "m.bp")(np.ones((2, 3), np.float32)).numpy(),
                                  probabilities)
