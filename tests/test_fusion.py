"""Joined elementwise groups in a replay (backprop.compiled.fusion): the same bits as the ops one by one on the
NumPy engine, within 1e-6 on numba's, and groups formed only where that holds."""
import inspect

import numpy as np
import pytest

import backprop as bp
from backprop import elementwise
from backprop.compiled import fusion
from backprop.compiled.plan import Plan
from backprop.tracing import trace

import cuda_on_cpu
from conftest import DEVICES


@pytest.fixture(autouse=True)
def join_everything():
    """Join every group, whatever its size, ops or engine (by default a step joins only where it pays)."""
    with fusion.using(fusion.EVERYTHING):
        yield


needs_numba_here = pytest.mark.skipif(elementwise.numba_module() is None, reason="numba is not installed")


def joined_nodes(function):
    plan = next(iter(function._plans.values()))[0]
    return [call for _, call, *_ in plan._steps if isinstance(call, fusion.Joined)]


def joined_ops(function):
    """Each joined node's ops, as "add+multiply+mean"."""
    return ["+".join(node.op for node in j.members + ([j.reduction] if j.reduction else [])) for j in joined_nodes(function)]


def compare(step, make_inputs, steps=4, exact=True):
    """Replayed and eager results of ``step`` on fresh inputs at every call."""
    compiled = bp.function(step)
    for _ in range(steps):
        inputs = make_inputs()
        eager = [t.numpy() for t in step(*inputs)]
        replayed = [t.numpy() for t in compiled(*inputs)]
        for e, r in zip(eager, replayed):
            if exact:
                np.testing.assert_array_equal(r, e)
            else:
                np.testing.assert_allclose(r, e, rtol=1e-6, atol=1e-7 * np.abs(e).max())
    return compiled


def dense_step(activation, rows=8, width=5, dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    w = bp.Variable(rng.normal(size=(4, width)).astype(dtype))
    b = bp.Variable(rng.normal(size=width).astype(dtype))

    def step(x):
        with bp.GradientTape() as tape:
            tape.watch(x)
            h = activation(bp.matmul(x, w) + b)
            loss = bp.reduce_mean(h * h)
        return [loss, h] + tape.gradient(loss, [w, b, x])

    def inputs():
        return [bp.Tensor(rng.normal(size=(rows, 4)).astype(dtype))]
    return step, inputs


ACTIVATIONS = {
    "sigmoid, times, minus tanh": lambda z: bp.sigmoid(z) * 2.0 - bp.tanh(z),
    "exp and log": lambda z: bp.log(bp.exp(z) + 1.5),
    "swish by hand": lambda z: z * bp.sigmoid(z),
    "square, sqrt, divide": lambda z: bp.sqrt(bp.square(z) + 1.0) / (z * z + 2.0),
    "sin and negative": lambda z: -bp.sin(z) * 3,
    "subtract from a number": lambda z: 1.0 - z * z,
}


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_joined_group_replays_the_same_bits_as_its_ops(name, dtype):
    step, inputs = dense_step(lambda z: ACTIVATIONS[name](z) * 1.0 + 0.0, dtype=dtype)
    compiled = compare(step, inputs)
    activation, loss = joined_nodes(compiled)  # bias add, the activation's ops and the last ones: one node
    assert [node.op for node in loss.members] == ["multiply"] and loss.reduction.op == "mean"  # h * h and its mean


REDUCTIONS = {"sum of all": (bp.reduce_sum, {}), "mean of all": (bp.reduce_mean, {}),
              "sum over rows": (bp.reduce_sum, {"axis": 0}), "mean per row, kept": (bp.reduce_mean, {"axis": -1, "keepdims": True}),
              "mean over both axes": (bp.reduce_mean, {"axis": (0, 1)})}


@pytest.mark.parametrize("name", sorted(REDUCTIONS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows", [7, 600])  # 600 x 120 values: numba's loop where it is installed
def test_a_sum_or_mean_of_a_group_joins_it_with_the_same_bits(name, dtype, rows):
    reduce, params = REDUCTIONS[name]
    rng = np.random.default_rng(11)

    def step(x, y):
        with bp.GradientTape() as tape:
            tape.watch([x, y])
            per_value = reduce(bp.square(x - y) * 0.5 + x * 0.25, **params)  # a hand-written loss
            loss = bp.reduce_sum(per_value * 1.0)
        return [loss, per_value] + tape.gradient(loss, [x, y])

    def inputs():
        return [bp.Tensor(rng.normal(size=(rows, 120)).astype(dtype)) for _ in range(2)]
    joined = joined_ops(compare(step, inputs))
    assert f"subtract+square+multiply+multiply+add+{reduce.__name__}" in joined


def test_a_reduction_of_a_value_read_elsewhere_stays_its_own_node():
    def f(x):
        h = x * 2.0 + 1.0
        return [bp.reduce_sum(h), h]  # h is an output as well: the sum cannot take it into the group
    graph = trace(f, [np.ones((4, 3))])
    assert [n.op for n in fusion.fused(graph).nodes] == ["multiply+add", "sum"]


def test_log_and_sqrt_of_bad_values_give_what_the_ops_give_quietly():
    def step(x):
        with bp.GradientTape() as tape:
            tape.watch(x)
            y = bp.log(x * 1.0) + bp.sqrt(x - 1.0)
        return [y, tape.gradient(y, x)]
    values = np.array([-1.0, 0.0, 0.5, 1.0, 4.0, np.inf, np.nan], np.float32)
    with np.errstate(all="ignore"):  # (the gradient's divisions by zero warn, eagerly as replayed)
        compare(step, lambda: [bp.Tensor(values)])
    with np.errstate(all="raise"):  # the forward ops compute these quietly: so must the joined ones
        compare(lambda x: [bp.log(x * 1.0) + bp.sqrt(x - 1.0)], lambda: [bp.Tensor(values)])


def test_values_read_outside_a_group_stay_its_own_nodes():
    rng = np.random.default_rng(1)

    def step(x):
        with bp.GradientTape() as tape:
            tape.watch(x)
            z = x * 2.0
            h = bp.exp(z) + 1.0   # z is returned as well: it cannot disappear into the group
            loss = bp.reduce_sum(h)
        return [loss, z] + tape.gradient(loss, [x])
    compiled = compare(step, lambda: [bp.Tensor(rng.normal(size=(6,)))])
    (joined,) = joined_nodes(compiled)
    assert [node.op for node in joined.members] == ["exp", "add"]


def test_a_gradient_the_tape_would_add_in_another_order_is_not_joined():
    """x feeds the group's first member and two ops between that member and the group's end: the tape adds the
    three shares of x's gradient in an order a joined node cannot keep, so the group is not joined."""
    rng = np.random.default_rng(2)

    def step(x):
        with bp.GradientTape() as tape:
            tape.watch(x)
            a = x * 3.0
            outside = bp.reduce_sum(x) + bp.reduce_mean(x)
            h = a * a + 1.0
            loss = bp.reduce_sum(h) + outside
        return [loss] + tape.gradient(loss, [x])
    graph = trace(lambda x: step(x)[1], [np.ones(5)])
    ops = [n.op for n in fusion.fused(graph).nodes]
    assert not any(op.startswith("multiply+") for op in ops)  # x * 3, a * a, + 1: not joined
    compare(step, lambda: [bp.Tensor(rng.normal(size=(1000,)))])


def test_an_input_read_twice_in_a_group_and_again_after_it_is_not_joined():
    """x * x reads x twice: the tape adds both shares onto what later readers of x added, one by one; a joined
    node would add their sum (204 of 1,000 gradients differed in the last bit before this was guarded)."""
    rng = np.random.default_rng(7)

    def step(x):
        with bp.GradientTape() as tape:
            tape.watch(x)
            h = x * x + 1.0
            loss = bp.reduce_sum(h) + bp.reduce_sum(x) + bp.reduce_mean(x)
        return [loss] + tape.gradient(loss, [x])
    joined = joined_nodes(compare(step, lambda: [bp.Tensor(rng.normal(size=(1000,)))]))
    assert all(node.op != "multiply" for j in joined for node in j.members)  # (the loss's scalar adds may join)

    def read_only_inside(x):  # the same group, x read by nothing else: joined
        with bp.GradientTape() as tape:
            tape.watch(x)
            loss = bp.reduce_sum(x * x + 1.0)
        return [loss] + tape.gradient(loss, [x])
    assert len(joined_nodes(compare(read_only_inside, lambda: [bp.Tensor(rng.normal(size=(1000,)))]))) == 1


def test_the_groups_are_the_ones_a_reader_expects():
    def f(x, y):
        a = bp.exp(x) * y          # a group: exp, multiply, add
        b = bp.matmul(a + 1.0, y)  # a matmul ends it
        return bp.tanh(b) - 1.0    # another: tanh, subtract
    x, y = np.ones((3, 3)), np.ones((3, 3))
    nodes = fusion.fused(trace(f, [x, y])).nodes
    assert [n.op for n in nodes] == ["exp+multiply+add", "matmul", "tanh+subtract"]
    assert Plan(trace(f, [x, y])).run([x, y])[0].tolist() == f(bp.Tensor(x), bp.Tensor(y)).numpy().tolist()


def test_mixed_precision_and_integer_steps_are_left_alone():
    def f(x, i):
        mixed = bp.cast(x, "float64") * 2.0 + 1.0  # the cast is not joined; the float64 math after it is
        counted = i * 2 + 1                        # integers: not joined
        return mixed + bp.cast(counted, "float64")
    x, i = np.ones(4, np.float32), np.arange(4)
    ops = [n.op for n in fusion.fused(trace(f, [x, i])).nodes]
    assert ops == ["cast", "multiply", "add", "cast", "multiply+add+add"]  # integers and casts: their own nodes


def test_turning_fusion_off_leaves_the_ops_one_by_one(monkeypatch):
    step, inputs = dense_step(bp.sigmoid)
    monkeypatch.setenv("BACKPROP_FUSE", "0")
    assert joined_nodes(compare(step, inputs)) == []
    monkeypatch.setenv("BACKPROP_FUSE", "1")
    assert joined_ops(compare(step, inputs)) == ["add+sigmoid", "multiply+mean"]


@needs_numba_here
def test_by_default_only_large_arithmetic_groups_are_joined():
    with fusion.using(fusion.Policy()):
        assert joined_nodes(compare(*dense_step(lambda z: z * z + 1.0, rows=8, width=5))) == []  # small
        assert joined_ops(compare(*dense_step(bp.sigmoid, rows=256, width=256))) == ["multiply+mean"]  # NumPy's exp
        assert joined_ops(compare(*dense_step(lambda z: z * z + 1.0, rows=256, width=256))) == [
            "add+multiply+add", "multiply+mean"]


def test_without_numba_nothing_is_joined_by_default(monkeypatch):
    monkeypatch.setattr(elementwise, "numba_module", lambda: None)
    with fusion.using(fusion.Policy()):
        assert joined_nodes(compare(*dense_step(lambda z: z * z + 1.0, rows=256, width=256))) == []


@pytest.mark.parametrize("device", [d for d in DEVICES if d != "cpu"])
@pytest.mark.parametrize("activation", [lambda z: bp.sigmoid(z) * 2.0 - bp.tanh(z), lambda z: (z * 2.0 - 1.0) / (z * z + 1.0)],
                         ids=["sigmoid and tanh", "arithmetic"])
def test_on_a_device_a_joined_group_runs_its_formulas_there(monkeypatch, activation, device):
    """On a device the joined formulas run on its arrays (on a GPU, one CUDA kernel each for the arithmetic
    group, compiled without fused multiply-adds): the same bits as eagerly on that device. On the strict device
    (CuPy's boundary, NumPy's numbers) nothing is read back to the host either."""
    from backprop.devices import strict
    monkeypatch.setattr(fusion.Joined, "_one_by_one", lambda *_: pytest.fail("ran the members one by one"))
    with bp.device(device):
        step, inputs = dense_step(activation)
        compiled = compare(step, inputs)
        batch = inputs()
        before = strict.transfers[0]
        for _ in range(3):
            compiled(*batch)
        assert strict.transfers[0] == before
    assert len(joined_ops(compiled)) == 2 and joined_ops(compiled)[1] == "multiply+mean"


def test_a_numpy_scalar_among_a_group_s_arrays_leaves_no_array_module_to_join_on():
    assert fusion._array_module([np.ones(3), np.float32(2.0)]) is None  # a NumPy scalar among the arrays
    assert fusion._array_module([np.ones(3), 2.0]) is np


def test_fit_with_a_hand_written_layer_joins_its_math_and_trains_as_eagerly():
    class MyDense(bp.layers.Layer):  # the lecture's own layer: matmul, + bias, sigmoid
        def build(self, input_shape):
            self.w = self.add_weight(shape=(input_shape[-1], 3), initializer="glorot_uniform")
            self.b = self.add_weight(shape=(3,), initializer="zeros")

        def call(self, x):
            return bp.sigmoid(bp.matmul(x, self.w) + self.b)

    def model(jit):
        bp.random.set_seed(3)
        m = bp.Sequential([bp.layers.Input(shape=(2,)), MyDense(), bp.layers.Dense(1, activation="sigmoid")])
        m.compile(optimizer=bp.optimizers.SGD(0.5), loss="binary_crossentropy", jit_compile=jit)
        return m
    x, y = bp.datasets.pass_fail(64)
    compiled, eager = model(True), model(False)
    a = compiled.fit(x, y, epochs=3, batch_size=16, verbose=0).history["loss"]
    b = eager.fit(x, y, epochs=3, batch_size=16, verbose=0).history["loss"]
    assert a == b
    for w1, w2 in zip(compiled.get_weights(), eager.get_weights()):
        np.testing.assert_array_equal(w1, w2)
    plan = next(iter(compiled._train_steps[False].signatures.values())).plan
    assert any(isinstance(call, fusion.Joined) for _, call, *_ in plan._steps)


needs_numba = pytest.mark.skipif(elementwise.numba_module() is None, reason="numba is not installed (the fast extra)")


@needs_numba
@pytest.mark.parametrize("bias", [False, True])
def test_large_arithmetic_groups_run_as_one_numba_loop_with_the_same_bits(bias):
    """+, -, *, / and sqrt are correctly rounded in numba's loop as in NumPy's ufuncs (no fastmath): the same bits."""
    rng = np.random.default_rng(4)
    rows, width = 512, 256  # 131,072 values: over NUMBA_FROM
    w = bp.Variable(rng.normal(size=(8, width)).astype(np.float32))
    b = bp.Variable(rng.normal(size=width).astype(np.float32))

    def step(x):
        with bp.GradientTape() as tape:
            z = bp.matmul(x, w)
            z = z + b if bias else z * 1.0
            h = (z * 2.0 - 1.0) * (z * 0.5 + 3.0) / (z * z + 1.0)
            loss = bp.reduce_mean(h)
        return [loss] + tape.gradient(loss, [w, b] if bias else [w])
    compiled = compare(step, lambda: [bp.Tensor(rng.normal(size=(rows, 8)).astype(np.float32))])
    (joined,) = joined_nodes(compiled)
    assert joined.forward_formula._loops and all(f._loops for f, _ in joined._backwards.values())
    assert joined.compile_seconds() > 0  # numba's compiles (or loads from the disk cache), reported


@needs_numba
def test_groups_of_numpy_s_vectorised_functions_stay_on_numpy():
    step, inputs = dense_step(bp.tanh, rows=512, width=256)
    joined, _ = joined_nodes(compare(step, inputs))  # (the second: h * h and its mean)
    assert not joined.forward_formula._loops  # NumPy's SIMD tanh: numba's per-element calls measured 6x slower


@needs_numba
def test_a_generated_formula_s_loop_is_cached_on_disk_by_its_text(tmp_path, monkeypatch):
    monkeypatch.setenv("BACKPROP_CACHE", str(tmp_path))
    rng = np.random.default_rng(5)
    x = rng.normal(size=(300, 300)).astype(np.float32)

    def f(a):
        return (a * 2.0 + 1.0) * a
    for _ in range(2):
        compiled = bp.function(f)
        compiled(x)
        np.testing.assert_allclose(compiled(x).numpy(), f(bp.Tensor(x)).numpy(), rtol=1e-6)
    files = list((tmp_path / "elementwise").glob("joined_*.py"))
    assert len(files) == 1 and "def joined(" in files[0].read_text()


@pytest.mark.skipif(not cuda_on_cpu.available(), reason="needs g++ to compile the kernel's body for the CPU")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_joined_group_s_gpu_kernels_compute_the_numpy_engine_s_bits(tmp_path, dtype):
    """Without a GPU: the CUDA kernels a joined arithmetic group's forward and backward formulas become on a GPU,
    their bodies compiled as C++ and run per element, give the NumPy engine's numbers, NaN and infinities too."""
    step, inputs = dense_step(lambda z: (z * 2.0 - 1.0) * (z * 0.5 + 3.0) / bp.sqrt(bp.square(z) + 1.0),
                              dtype=np.dtype(dtype).type)
    joined = joined_nodes(compare(step, inputs))[0]
    formulas = [joined.forward_formula] + [formula for formula, _ in joined._backwards.values()]
    rng = np.random.default_rng(12)
    for formula in formulas:
        assert formula.cuda_source() is not None
        names = list(inspect.signature(formula.formula).parameters)
        scalars = dict(zip(names[len(names) - len(formula.constants):], formula.constants))
        arrays = {name: rng.uniform(-2.0, 2.0, size=400).astype(dtype) for name in names if name not in scalars}
        for k, a in enumerate(arrays.values()):
            a[k], a[30 + k], a[60 + k] = np.nan, np.inf, -np.inf
        expected = {name: a.copy() for name, a in arrays.items()}
        with np.errstate(all="ignore"):
            formula.run_numpy(*expected.values(), *scalars.values())
        cuda_on_cpu.run(formula.cuda_source(), tmp_path, arrays, scalars, T=dtype)
        for name in arrays:
            np.testing.assert_array_equal(arrays[name], expected[name], err_msg=name)
