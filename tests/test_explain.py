"""The chain rule laid out and the computational graph: numbers checked against formulas written out."""
import numpy as np
import pytest

import backprop as bp


def lecture_network():
    """The lecture's 1-1-1 network, J = (y - sigmoid(w2 sigmoid(w1 x)))^2, in float64."""
    w1, w2 = bp.Variable(np.float64(0.5), name="w1"), bp.Variable(np.float64(-0.3), name="w2")
    x, y = bp.Tensor(np.float64(2.0)), bp.Tensor(np.float64(1.0))
    with bp.GradientTape(persistent=True) as tape:
        z1 = x * w1
        a1 = bp.sigmoid(z1)
        z2 = a1 * w2
        y_hat = bp.sigmoid(z2)
        J = bp.square(y - y_hat)
    names = {J: "J", y_hat: "ŷ", z2: "z2", a1: "a1", z1: "z1", x: "x", y: "y"}
    return tape, J, (w1, w2), names


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
    else:  # Dense then Activation: z and a appear as separate steps, as on the slides
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
        assert len(ledger.paths[0]) == (3 if fused else 4)


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
