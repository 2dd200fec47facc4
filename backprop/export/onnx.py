"""ONNX export: trace the model's inference call into a graph of ops, translate each op into ONNX nodes.

The model is traced twice, on batches of two sizes with different values. The two traces must run the
same ops on the same weights (``tracing.same_computation``); shape parameters that follow the batch
(a Flatten's reshape) become ONNX's "copy this dimension", so the exported batch dimension is dynamic.
An op without a translation is an error naming the op and its layer, and when onnxruntime is installed
the file is run on the traced batches and compared with the model before it is written.
"""
import contextlib
import math

from backprop import devices, tracing
from backprop.ops.nn import _SELU_ALPHA, _SELU_SCALE
from backprop.layers.layer import weight_paths
from backprop.saving.tensor_file import atomic_write
from backprop.xp import np

OPSET = 20
TRACE_BATCHES = (2, 3)
BATCH = "batch"


def _onnx():
    try:
        import onnx
    except ImportError:
        raise ImportError("ONNX export needs the onnx package: pip install 'backprop[onnx]'") from None
    return onnx


class Emitter:
    """Collects ONNX nodes and initializers under unique names."""

    def __init__(self, onnx):
        self.onnx, self.helper = onnx, onnx.helper
        self.nodes, self.initializers, self.names = [], [], set()

    def fresh(self, stem):
        name, count = stem, 1
        while name in self.names:
            count += 1
            name = f"{stem}_{count}"
        self.names.add(name)
        return name

    def node(self, op_type, inputs, out=None, domain=None, **attributes):
        out = out or self.fresh(op_type.lower())
        self.nodes.append(self.helper.make_node(op_type, list(inputs), [out], name=self.fresh(f"{op_type}_node"),
                                                domain=domain, **attributes))
        return out

    def constant(self, value, dtype=None, stem="const"):
        array = np.asarray(value) if dtype is None else np.asarray(value, dtype=dtype)
        name = self.fresh(stem)
        self.initializers.append(self.onnx.numpy_helper.from_array(array, name))
        return name


# --- op translations: each takes (emitter, node, input names, output name, context) -------------------------
def _unary(op_type):
    return lambda e, node, x, out, ctx: e.node(op_type, x[:1], out)


def _binary(op_type):
    return lambda e, node, x, out, ctx: e.node(op_type, x[:2], out)


def _dense(e, node, x, out, ctx):
    activation = node.params.get("activation")
    product = e.node("MatMul", x[:2], out if x[2] is None and activation in (None, "linear") else None)
    if x[2] is not None:
        product = e.node("Add", [product, x[2]], out if activation in (None, "linear") else None)
    if activation in (None, "linear"):
        return product
    return e.node({"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh"}[activation], [product], out)


def _scalar(e, value, node):
    return e.constant(value, node.dtype)


def _swish(e, node, x, out, ctx):
    return e.node("Mul", [x[0], e.node("Sigmoid", [x[0]])], out)


def _gelu(e, node, x, out, ctx):
    a = x[0]
    if node.params.get("approximate", True):  # 0.5 a (1 + tanh(sqrt(2/pi) (a + 0.044715 a^3)))
        cube = e.node("Mul", [e.node("Mul", [a, a]), a])
        inner = e.node("Add", [a, e.node("Mul", [cube, _scalar(e, 0.044715, node)])])
        t = e.node("Tanh", [e.node("Mul", [inner, _scalar(e, math.sqrt(2 / math.pi), node)])])
    else:  # a * 0.5 (1 + erf(a / sqrt(2)))
        t = e.node("Erf", [e.node("Div", [a, _scalar(e, math.sqrt(2), node)])])
    half_a = e.node("Mul", [a, _scalar(e, 0.5, node)])
    return e.node("Mul", [half_a, e.node("Add", [t, _scalar(e, 1.0, node)])], out)


def _square(e, node, x, out, ctx):
    return e.node("Mul", [x[0], x[0]], out)


def _clip(e, node, x, out, ctx):
    low, high = node.params.get("min_value"), node.params.get("max_value")
    bounds = ["" if v is None else _scalar(e, v, node) for v in (low, high)]
    return e.node("Clip", [x[0]] + bounds, out)


def _relu6(e, node, x, out, ctx):
    return e.node("Clip", [x[0], _scalar(e, 0.0, node), _scalar(e, 6.0, node)], out)


def _where(e, node, x, out, ctx):
    return e.node("Where", [e.node("Cast", [x[0]], to=e.onnx.TensorProto.BOOL)] + x[1:3], out)


def _axes_input(e, axis):
    return e.constant(np.array([axis] if isinstance(axis, int) else list(axis), dtype=np.int64), stem="axes")


def _reduce(op_type):
    def translate(e, node, x, out, ctx):
        axis = node.params.get("axis")
        keepdims = int(bool(node.params.get("keepdims", False)))
        inputs = [x[0]] if axis is None else [x[0], _axes_input(e, axis)]
        return e.node(op_type, inputs, out, keepdims=keepdims)
    return translate


def _reshape(e, node, x, out, ctx):
    shape = [int(v) for v in np.atleast_1d(node.params["shape"])]
    for position in ctx.batch_positions(node, "shape"):
        if position != 0 or not ctx.batch_first(node.inputs[0]):
            raise tracing.TraceError(f"{ctx.graph.where(node)}: a reshape that moves the batch dimension cannot "
                                     "be exported with a dynamic batch")
        shape[0] = 0  # ONNX: copy the input's dimension
    return e.node("Reshape", [x[0], e.constant(np.array(shape, dtype=np.int64), stem="shape")], out)


def _transpose(e, node, x, out, ctx):
    perm = node.params.get("perm")
    perm = list(range(len(node.shape)))[::-1] if perm is None else [int(p) for p in perm]
    return e.node("Transpose", x[:1], out, perm=perm)


def _expand_dims(e, node, x, out, ctx):
    return e.node("Unsqueeze", [x[0], _axes_input(e, node.params["axis"])], out)


def _squeeze(e, node, x, out, ctx):
    axis = node.params.get("axis")
    return e.node("Squeeze", x[:1] if axis is None else [x[0], _axes_input(e, axis)], out)


def _cast(e, node, x, out, ctx):
    return e.node("Cast", x[:1], out, to=e.helper.np_dtype_to_tensor_dtype(np.dtype(node.params["dtype"])))


def _concat(e, node, x, out, ctx):
    return e.node("Concat", x, out, axis=int(node.params["axis"]))


def _stack(e, node, x, out, ctx):
    axis = int(node.params["axis"])
    return e.node("Concat", [e.node("Unsqueeze", [name, _axes_input(e, axis)]) for name in x], out, axis=axis)


def _argmax(e, node, x, out, ctx):
    return e.node("ArgMax", x[:1], out, axis=int(node.params.get("axis", -1)), keepdims=0)


TRANSLATIONS = {
    "dense": _dense, "matmul": _binary("MatMul"),
    "add": _binary("Add"), "subtract": _binary("Sub"), "multiply": _binary("Mul"), "divide": _binary("Div"),
    "power": _binary("Pow"), "maximum": _binary("Max"), "minimum": _binary("Min"),
    "negative": _unary("Neg"), "sqrt": _unary("Sqrt"), "sin": _unary("Sin"), "exp": _unary("Exp"), "log": _unary("Log"),
    "abs": _unary("Abs"), "square": _square, "clip": _clip, "where": _where,
    "sigmoid": _unary("Sigmoid"), "tanh": _unary("Tanh"), "relu": _unary("Relu"), "softplus": _unary("Softplus"),
    "softsign": _unary("Softsign"), "relu6": _relu6, "swish": _swish, "gelu": _gelu,
    "leaky_relu": lambda e, node, x, out, ctx: e.node("LeakyRelu", x[:1], out, alpha=float(node.params.get("alpha", 0.2))),
    "elu": lambda e, node, x, out, ctx: e.node("Elu", x[:1], out, alpha=float(node.params.get("alpha", 1.0))),
    "selu": lambda e, node, x, out, ctx: e.node("Selu", x[:1], out, alpha=_SELU_ALPHA, gamma=_SELU_SCALE),
    "softmax": lambda e, node, x, out, ctx: e.node("Softmax", x[:1], out, axis=int(node.params.get("axis", -1))),
    "log_softmax": lambda e, node, x, out, ctx: e.node("LogSoftmax", x[:1], out,
                                                       axis=int(node.params.get("axis", -1))),
    "sum": _reduce("ReduceSum"), "mean": _reduce("ReduceMean"), "max": _reduce("ReduceMax"),
    "min": _reduce("ReduceMin"), "logsumexp": _reduce("ReduceLogSumExp"),
    "reshape": _reshape, "transpose": _transpose, "expand_dims": _expand_dims, "squeeze": _squeeze,
    "cast": _cast, "concat": _concat, "stack": _stack, "argmax": _argmax, "stop_gradient": _unary("Identity"),
}
# Inputs that are parameters of the op rather than values of the graph (the condition of where is cast).
_FLOAT_CONSTANT_OPS = set(TRANSLATIONS) - {"where", "cast", "argmax"}


class _Context:
    """What a translation may ask about the two traces: which parameter entries follow the batch size."""

    def __init__(self, graph, other, batches):
        self.graph, self.other, self.batches = graph, other, batches
        self._position = {id(n): i for i, n in enumerate(graph.nodes)}

    def batch_positions(self, node, key):
        mine = np.atleast_1d(node.params[key])
        theirs = np.atleast_1d(self.other.nodes[self._position[id(node)]].params[key])
        if mine.shape != theirs.shape:
            raise tracing.TraceError(f"{self.graph.where(node)}: its {key} changes rank with the batch size")
        differing = [i for i in range(len(mine)) if mine[i] != theirs[i]]
        for i in differing:
            if (mine[i], theirs[i]) != self.batches:
                raise tracing.TraceError(f"{self.graph.where(node)}: its {key} depends on the batch in a way that "
                                         "cannot be exported with a dynamic batch")
        return differing

    def batch_first(self, source):
        """True when the value behind ``source`` has the batch as its first dimension in both traces."""
        if source.kind == "input":
            shapes = (self.graph.inputs[source.index][0], self.other.inputs[source.index][0])
        elif source.kind == "node":
            shapes = (self.graph.nodes[source.index].shape, self.other.nodes[source.index].shape)
        else:
            return False
        return all(len(s) > 0 for s in shapes) and (shapes[0][0], shapes[1][0]) == self.batches


def _value_name(e, source, node, value_names, variable_names, weight_names):
    """The ONNX name of one input of ``node``, cast to the node's float dtype where NumPy would promote it."""
    if source is None:
        return None
    if source.kind in ("input", "node"):
        name, dtype = value_names[(source.kind, source.index)]
    elif source.kind == "variable":
        key = id(source.value)
        if key not in variable_names:
            stem = weight_names.get(key) or getattr(source.value, "name", "weight")
            variable_names[key] = e.constant(source.value.numpy(), stem=stem)
        name, dtype = variable_names[key], source.value.dtype
    else:
        value = source.value
        if node.op in _FLOAT_CONSTANT_OPS and np.dtype(node.dtype).kind == "f" and np.asarray(value).dtype.kind in "fiub":
            return e.constant(value, node.dtype)
        return e.constant(value)
    promoted = node.op in _FLOAT_CONSTANT_OPS and np.dtype(dtype).kind == "f" and np.dtype(node.dtype).kind == "f"
    if promoted and np.dtype(dtype) != np.dtype(node.dtype):
        return e.node("Cast", [name], to=e.helper.np_dtype_to_tensor_dtype(np.dtype(node.dtype)))
    return name


def to_proto(graphs, batches, input_names, output_names, metadata=None, extend=None, weight_names=None,
             prologue=None):
    """An ONNX ModelProto for two traces of one computation (see the module docstring)."""
    onnx = _onnx()
    graph, other = graphs
    tracing.same_computation(graph, other, varying={"shape"})
    e, ctx = Emitter(onnx), _Context(graph, other, batches)
    value_names, inputs = {}, []
    if prologue is not None:  # nodes before the model (the CLI's input scaling): (graph inputs, model input)
        inputs, model_input = prologue(e)
        value_names[("input", 0)] = (model_input, np.dtype(np.float32))
    else:
        for i, ((shape, dtype), name) in enumerate(zip(graph.inputs, input_names)):
            e.names.add(name)
            value_names[("input", i)] = (name, dtype)
            inputs.append(onnx.helper.make_tensor_value_info(name, onnx.helper.np_dtype_to_tensor_dtype(dtype),
                                                             [BATCH] + list(shape[1:])))
    variable_names = {}
    for index, node in enumerate(graph.nodes):
        translate = TRANSLATIONS.get(node.op)
        if translate is None:
            raise tracing.TraceError(f"cannot export {graph.where(node)} to ONNX: no translation for '{node.op}' "
                                     f"(exportable ops: {', '.join(sorted(TRANSLATIONS))})")
        names = [_value_name(e, s, node, value_names, variable_names, weight_names or {}) for s in node.inputs]
        value_names[("node", index)] = (translate(e, node, names, e.fresh(f"{node.op}_out"), ctx), node.dtype)
    results = [value_names[(s.kind, s.index)][0] for s in graph.outputs]
    shapes = [graph.nodes[s.index].shape if s.kind == "node" else graph.inputs[s.index][0] for s in graph.outputs]
    dtypes = [graph.nodes[s.index].dtype if s.kind == "node" else graph.inputs[s.index][1] for s in graph.outputs]
    if extend is None:
        outputs = [(result, onnx.helper.make_tensor_value_info(name, onnx.helper.np_dtype_to_tensor_dtype(dtype),
                                                               [BATCH] + list(shape[1:])))
                   for result, name, shape, dtype in zip(results, output_names, shapes, dtypes)]
    else:  # nodes after the model (the CLI's output scaling and labels): [(result, value info)]
        outputs = extend(e, results, dtypes)
    for result, info in outputs:
        e.node("Identity", [result], info.name)
    proto_graph = onnx.helper.make_graph(e.nodes, "backprop", inputs, [info for _, info in outputs], e.initializers)
    model = onnx.helper.make_model(proto_graph, opset_imports=[onnx.helper.make_opsetid("", OPSET)],
                                   producer_name="backprop")
    model.ir_version = min(model.ir_version, 10)  # readable by onnxruntime releases of the last two years
    onnx.helper.set_model_props(model, {str(k): str(v) for k, v in (metadata or {}).items()})
    onnx.checker.check_model(model, full_check=True)
    return model


def _example_shapes(model):
    inputs = getattr(model, "_inputs", None)
    if inputs:
        return [tuple(symbol.shape[1:]) for symbol in inputs]
    if model.example_shape is None:
        raise ValueError(f"cannot export model '{model.name}': its input shape is unknown; call it on data or "
                         "give it an input shape first")
    return [model.example_shape]


def _examples(model, batch, seed):
    shapes = _example_shapes(model)
    generator = np.random.default_rng(seed)
    return [generator.standard_normal((batch,) + tuple(shape)).astype(model.dtype) for shape in shapes]


def _input_names(model):
    inputs = getattr(model, "_inputs", None)
    if inputs:
        return [symbol.layer.name for symbol in inputs]
    return ["input"]


def trace_model(model):
    """Two traces of ``model(x, training=False)`` on random batches of TRACE_BATCHES sizes, with their inputs."""
    examples = [_examples(model, batch, seed) for seed, batch in enumerate(TRACE_BATCHES)]

    def forward(*xs):
        return model(xs[0] if len(xs) == 1 else list(xs), training=False)

    return [tracing.trace(forward, batch) for batch in examples], examples


def model_proto(model, metadata=None, extend=None, output_names=None, prologue=None):
    graphs, examples = trace_model(model)
    outputs = output_names or (["output"] if len(graphs[0].outputs) == 1
                               else [f"output_{i}" for i in range(len(graphs[0].outputs))])
    weight_names = {id(variable): path for path, variable in weight_paths(model, unique=False)}
    proto = to_proto(graphs, TRACE_BATCHES, _input_names(model), outputs, metadata, extend, weight_names, prologue)
    return proto, examples


def verify(proto, model, examples, tolerance=1e-5):
    """Run the file with onnxruntime, when installed, and compare with the model on the traced batches."""
    try:
        import onnxruntime
    except ImportError:
        return False
    session = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    for batch in examples:
        expected = model(batch[0] if len(batch) == 1 else list(batch), training=False)
        expected = [expected] if not isinstance(expected, (list, tuple)) else expected
        got = session.run(None, dict(zip(names, batch)))
        for want, have in zip(expected, got):
            want = np.asarray(want.data)
            if want.shape != have.shape or not np.allclose(have, want, rtol=tolerance, atol=tolerance):
                raise tracing.TraceError("the exported graph computes something other than the model "
                                         f"(largest difference {np.max(np.abs(have - want)):.3g}); nothing was written")
    return True


def export(model, path, metadata=None):
    """Write ``model`` as an ONNX file at ``path`` (atomically); return the path."""
    with on_the_host(model):
        proto, examples = model_proto(model, metadata)
        verify(proto, model, examples)
    atomic_write(path, [proto.SerializeToString()])
    return path


@contextlib.contextmanager
def on_the_host(model):
    """The model on the CPU while a graph is traced from it (its weights become the file's numbers), then back
    on its device."""
    device = model.device
    if device is devices.CPU:
        yield model
        return
    model.to("cpu")
    try:
        with devices.device("cpu"):
            yield model
    finally:
        model.to(device)
