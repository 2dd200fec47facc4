"""The chain rule laid out and the computational graph: numbers checked against formulas written out."""
import numpy as np
import pytest

import backprop as bp
from backprop.lecture.examples.s11_backpropagation import lecture_network


def test_the_lectures_derivation_for_w1():
    tape, J, (w1, w2), names = lecture_network()
    ledger = bp.explain.chain_rule(J, w1, tape, names=names)
    s = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    a1 = s(2.0 * 0.5)
    y_hat = s(-0.3 * a1)
    expected = [("J", "subtract1", 2 * (1 - y_hat)), ("subtract1", "ŷ", -1.0), ("ŷ", "z2", y_hat * (1 - y_hat)),
                ("z2", "a1", -0.3), ("a1", "z1", a1 * (1 - a1)), ("z1", "w1", 2.0)]
    assert ledger.path_count == 1 and len(ledger.paths[0]) == len(expected)
    for (upper, lower, value), (want_upper, want_lower, want) in zip(ledger.paths[0], expected):
        assert (upper, lower) == (want_upper, want_lower) and value == pytest.approx(want, rel=1e-12)
    assert ledger.total == pytest.approx(np.prod([v for _, _, v in expected]), rel=1e-12)
    assert ledger.agrees and ledger.tape_gradient == pytest.approx(float(tape.gradient(J, w1).numpy()), rel=1e-12)
    text = str(ledger)
    assert "∂J/∂subtract1 · ∂subtract1/∂ŷ · ∂ŷ/∂z2 · ∂z2/∂a1 · ∂a1/∂z1 · ∂z1/∂w1" in text and "(they agree)" in text


@pytest.mark.parametrize("fused", [True, False])
def test_every_element_of_a_small_dense_stack(fused):
    bp.random.set_seed(0)
    x = np.array([[0.5, -1.0], [1.5, 2.0], [0.1, 0.3]], np.float64)
    y = np.array([[1.0], [0.0], [0.5]])
    if fused:
        layers = [bp.layers.Dense(3, activation="tanh", input_shape=(2,), dtype="float64"),
                  bp.layers.Dense(1, dtype="float64")]
    else:  # Dense then Activation: z and a are separate steps anyway
        layers = [bp.layers.Dense(3, input_shape=(2,), dtype="float64"), bp.layers.Activation("tanh", dtype="float64"),
                  bp.layers.Dense(1, dtype="float64")]
    model = bp.Sequential(layers)
    kernel = model.layers[0].kernel
    with bp.GradientTape(persistent=True) as tape:
        loss = bp.losses.MeanSquaredError()(y, model(x))
    gradient = tape.gradient(loss, kernel).numpy()
    for index in np.ndindex(kernel.shape):
        ledger = bp.explain.chain_rule(loss, kernel, tape, index=index)
        assert ledger.path_count == 3  # one path through each example's hidden unit index[1]
        assert ledger.total == pytest.approx(gradient[index], rel=1e-10) and ledger.agrees
        # a fused Dense is laid out as the plain ops it stands for: the same six steps either way
        assert [upper.split("[")[0] for upper, _, _ in ledger.paths[0]] == [
            "mean_squared_error_mean1", "add2", "matmul2", "tanh1", "add1", "matmul1"]


def test_the_record_must_still_be_there():
    w = bp.Variable(np.float64(1.0))
    with bp.GradientTape() as tape:
        loss = bp.square(w * 3.0)
    tape.gradient(loss, w)
    with pytest.raises(ValueError, match="persistent=True"):
        bp.explain.chain_rule(loss, w, tape)
    with pytest.raises(ValueError, match="scalar"):
        with bp.GradientTape(persistent=True) as tape:
            vector = w * np.ones(3)
        bp.explain.chain_rule(vector, w, tape)


def test_computation_and_the_graph_picture():
    pytest.importorskip("matplotlib")
    tape, J, (w1, w2), names = lecture_network()
    computation = bp.explain.computation(J, tape, names)
    assert [step.label for step in computation.steps] == ["z1", "a1", "z2", "ŷ", "subtract1", "J"]
    assert set(computation.leaves) == {"x", "w1", "w2", "y"}
    assert computation.steps[-1].gradient == 1.0
    assert float(computation.leaves["w1"][1]) == pytest.approx(float(tape.gradient(J, w1).numpy()))
    figure = bp.plot.graph(J, tape, names=names)
    texts = [t.get_text() for t in figure.axes[0].texts if t.get_text()]  # the arrows are empty annotations
    assert any(t.startswith("ŷ\n= sigmoid(…)\n0.4454\ngrad -1.109") for t in texts) and len(texts) == 10


# --- a real network's loss landscape --------------------------------------------------------------------------
def trained_moons():
    x, y = bp.datasets.moons(200)
    bp.random.set_seed(0)
    model = bp.Sequential([bp.layers.Dense(8, activation="relu", input_shape=(2,)), bp.layers.Dense(1)])
    model.compile(optimizer=bp.optimizers.Adam(0.02), loss=bp.losses.BinaryCrossentropy(from_logits=True))
    trajectory = bp.landscape.Trajectory()
    model.fit(x, y.astype(np.float32), epochs=12, verbose=0, callbacks=[trajectory])
    return model, x, y.astype(np.float32), trajectory


def test_filter_normalised_directions_and_the_surface_around_the_weights():
    model, x, y, _ = trained_moons()
    weights = model.get_weights()
    direction = bp.landscape._filter_normalized(model, np.random.default_rng(1).standard_normal(
        sum(w.size for w in weights)))
    kernel_size = weights[0].size
    first = direction[:kernel_size].reshape(weights[0].shape)
    np.testing.assert_allclose(np.linalg.norm(first, axis=0), np.linalg.norm(weights[0], axis=0), rtol=1e-6)
    assert not direction[kernel_size:kernel_size + weights[1].size].any()  # biases get no component
    surface = bp.landscape.network_surface(model, x, y, resolution=9, span=0.5)
    assert surface.losses.shape == (9, 9) and np.isfinite(surface.losses).all()
    centre = model.evaluate(x, y, verbose=0, batch_size=1000)
    assert surface.losses[4, 4] == pytest.approx(centre, rel=1e-5)  # the grid's middle is the model itself
    assert all(np.array_equal(a, b) for a, b in zip(weights, model.get_weights()))


def test_the_trajectory_is_projected_on_its_principal_plane():
    pytest.importorskip("matplotlib")
    model, x, y, trajectory = trained_moons()
    assert len(trajectory.points) == 13  # the start and every epoch
    surface = bp.landscape.network_surface(model, x, y, resolution=7, trajectory=trajectory.points)
    np.testing.assert_allclose(surface.path[-1], [0, 0], atol=1e-9)  # the path ends at the trained weights
    assert surface.path_losses[0] > surface.path_losses[-1]
    start_distance = np.linalg.norm(trajectory.points[0] - trajectory.points[-1])
    assert np.linalg.norm(surface.path[0]) == pytest.approx(start_distance, rel=0.2)  # the plane holds most of it
    figure = bp.plot.network_landscape(model, x, y, trajectory=trajectory.points, resolution=7)
    assert figure.axes[0].get_xlabel() == "PC 1" and "training path" in figure.axes[0].get_title()
