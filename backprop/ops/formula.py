"""An elementwise op's math as symbols, so a compiled step can join several ops into one loop.

An op declares ``formula=(value, gradients)`` beside its NumPy forward (backprop.ops.op.differentiable):
``value(*inputs)`` and ``gradients(g, out, *inputs)`` are written with Python operators and the functions
below, and must perform the same operations, in the same order, as the op's own NumPy code, so a joined loop
run by NumPy computes the same bits as the ops one by one. Called on ``Symbol``s they build an expression
graph (backprop.compiled.fusion turns it into code); a number written in a formula becomes a named
constant, computed in the arrays' precision as NumPy's weak Python scalars are.
"""


class Symbol:
    """A node of an expression: a leaf (an input, a constant, a gradient) or an operation on symbols."""

    __slots__ = ("op", "args")

    def __init__(self, op, args=()):
        self.op, self.args = op, args

    def __add__(self, other):
        return apply("add", self, other)

    def __radd__(self, other):
        return apply("add", other, self)

    def __sub__(self, other):
        return apply("subtract", self, other)

    def __rsub__(self, other):
        return apply("subtract", other, self)

    def __mul__(self, other):
        return apply("multiply", self, other)

    def __rmul__(self, other):
        return apply("multiply", other, self)

    def __truediv__(self, other):
        return apply("divide", self, other)

    def __rtruediv__(self, other):
        return apply("divide", other, self)

    def __neg__(self):
        return apply("negative", self)


def constant(value):
    return Symbol("constant", (value,))


def apply(op, *args):
    return Symbol(op, tuple(a if isinstance(a, Symbol) else constant(a) for a in args))


# Each is NumPy's ufunc of the same name; the code generator writes np.<name>(...).
UFUNCS = ("add", "subtract", "multiply", "divide", "negative", "exp", "log", "sin", "cos", "tanh", "sqrt",
          "logaddexp", "minimum", "absolute")


def exp(a):
    return apply("exp", a)


def log(a):
    return apply("log", a)


def sin(a):
    return apply("sin", a)


def cos(a):
    return apply("cos", a)


def tanh(a):
    return apply("tanh", a)


def sqrt(a):
    return apply("sqrt", a)


def logaddexp(a, b):
    return apply("logaddexp", a, b)


def minimum(a, b):
    return apply("minimum", a, b)


def absolute(a):
    return apply("absolute", a)


def sigmoid(a):
    """backprop's sigmoid, step for step (backprop.ops.nn._sigmoid): exp(min(a, 0)) / (1 + exp(-|a|))."""
    return exp(minimum(a, 0)) / (1 + exp(-absolute(a)))
