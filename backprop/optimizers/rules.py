"""The update rules, with Keras 3's formulas and defaults, in order of increasing complexity.

Each rule's arithmetic is an elementwise formula (backprop.elementwise), one line per formula as the papers
write them; ``update`` computes the step's scalars and applies the formula to the flat buffers in place (one
compiled pass with numba installed, NumPy in cache-sized blocks otherwise, one CUDA kernel made from the formula
on a GPU).
"""
import math
import numbers

from backprop.elementwise import elementwise
from backprop.optimizers.optimizer import Optimizer, _check_positive, check_fraction
from backprop.xp import np


@elementwise(updates=("w",))
def descent(w, step):
    return w - step


@elementwise(updates=("m", "w"))
def descent_with_momentum(w, step, m, momentum):
    m = m * momentum + step
    w = w - m
    return m, w


@elementwise(updates=("w",))
def sgd(w, g, lr):
    return w - g * lr


@elementwise(updates=("v", "w"))
def sgd_momentum(w, g, v, lr, momentum):
    v = v * momentum - g * lr
    w = w + v
    return v, w


@elementwise(updates=("v", "w"))
def sgd_nesterov(w, g, v, lr, momentum):
    v = v * momentum - g * lr
    w = w - g * lr + v * momentum
    return v, w


class SGD(Optimizer):
    """v = momentum * v - lr * g;  w += v  (Nesterov: w += momentum * v - lr * g).  Plain: w -= lr * g."""

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, **kwargs):
        super().__init__(learning_rate, **kwargs)
        if not 0 <= momentum <= 1:
            raise ValueError(f"SGD: momentum must be in [0, 1], got {momentum!r}")
        self.momentum, self.nesterov = momentum, nesterov
        self.slot_names = ("momentum",) if momentum else ()

    def update(self, w, g, slots, lr):
        if not self.momentum:
            sgd(w, g, lr)
        else:
            (sgd_nesterov if self.nesterov else sgd_momentum)(w, g, slots["momentum"], lr, self.momentum)

@elementwise(updates=("a", "w"))
def adagrad(w, g, a, lr, epsilon):
    a = a + g * g
    w = w - g / np.sqrt(a + epsilon) * lr
    return a, w


class Adagrad(Optimizer):
    """a += g^2;  w -= lr * g / sqrt(a + epsilon)."""

    slot_names = ("accumulator",)

    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7, **kwargs):
        super().__init__(learning_rate, **kwargs)
        if isinstance(initial_accumulator_value, bool) or not isinstance(initial_accumulator_value, numbers.Real) or \
                not 0 <= initial_accumulator_value < float("inf"):
            raise ValueError(f"Adagrad: initial_accumulator_value must be a finite number >= 0, got "
                             f"{initial_accumulator_value!r} (the square root of a negative sum is NaN)")
        self.initial_accumulator_value, self.epsilon = initial_accumulator_value, epsilon

    def initial_slot(self, name, value):
        return np.full_like(value, self.initial_accumulator_value)

    def update(self, w, g, slots, lr):
        adagrad(w, g, slots["accumulator"], lr, self.epsilon)

@elementwise(updates=("s", "step"))
def rmsprop_step(g, s, step, rho, one_minus_rho, epsilon, lr):
    s = s * rho + g * g * one_minus_rho
    step = g / np.sqrt(s + epsilon) * lr
    return s, step


@elementwise(updates=("s", "mean_g", "step"))
def centered_rmsprop_step(g, s, mean_g, step, rho, one_minus_rho, epsilon, lr):
    s = s * rho + g * g * one_minus_rho
    mean_g = mean_g * rho + g * one_minus_rho
    step = g / np.sqrt(s - mean_g * mean_g + epsilon) * lr
    return s, mean_g, step


class RMSprop(Optimizer):
    """s = rho s + (1 - rho) g^2;  step = lr g / sqrt(s - mean_g^2 [centered] + epsilon), with optional momentum."""

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False, **kwargs):
        super().__init__(learning_rate, **kwargs)
        check_fraction("rho", rho), check_fraction("momentum", momentum), _check_positive("epsilon", epsilon)
        self.rho, self.momentum, self.epsilon, self.centered = rho, momentum, epsilon, centered
        self.slot_names = ("velocity",) + (("average_gradient",) if centered else ()) + (
            ("momentum",) if momentum else ())

    def update(self, w, g, slots, lr):
        step = self.scratch(w)
        if self.centered:
            centered_rmsprop_step(g, slots["velocity"], slots["average_gradient"], step, self.rho, 1 - self.rho,
                                  self.epsilon, lr)
        else:
            rmsprop_step(g, slots["velocity"], step, self.rho, 1 - self.rho, self.epsilon, lr)
        if self.momentum:
            descent_with_momentum(w, step, slots["momentum"], self.momentum)
        else:
            descent(w, step)

@elementwise(updates=("eg2", "ed2", "w"))
def adadelta(w, g, eg2, ed2, rho, one_minus_rho, epsilon, lr):
    eg2 = eg2 * rho + g * g * one_minus_rho
    delta = -(np.sqrt(ed2 + epsilon) * g / np.sqrt(eg2 + epsilon))
    ed2 = ed2 * rho + delta * delta * one_minus_rho
    w = w + delta * lr
    return eg2, ed2, w


class Adadelta(Optimizer):
    """E[g^2] = rho E[g^2] + (1-rho) g^2;  d = -sqrt(E[d^2] + eps) / sqrt(E[g^2] + eps) g;
    E[d^2] = rho E[d^2] + (1-rho) d^2;  w += lr d."""

    slot_names = ("accumulated_grad", "accumulated_delta")

    def __init__(self, learning_rate=0.001, rho=0.95, epsilon=1e-7, **kwargs):
        super().__init__(learning_rate, **kwargs)
        check_fraction("rho", rho), _check_positive("epsilon", epsilon)
        self.rho, self.epsilon = rho, epsilon

    def update(self, w, g, slots, lr):
        adadelta(w, g, slots["accumulated_grad"], slots["accumulated_delta"], self.rho, 1 - self.rho, self.epsilon, lr)

@elementwise(updates=("m", "v", "w"))
def adam(w, g, m, v, one_minus_b1, one_minus_b2, epsilon, alpha):
    m = m + (g - m) * one_minus_b1
    v = v + (g * g - v) * one_minus_b2
    w = w - m / (np.sqrt(v) + epsilon) * alpha
    return m, v, w


@elementwise(updates=("m", "v", "v_hat", "w"))
def adam_amsgrad(w, g, m, v, v_hat, one_minus_b1, one_minus_b2, epsilon, alpha):
    m = m + (g - m) * one_minus_b1
    v = v + (g * g - v) * one_minus_b2
    v_hat = np.maximum(v_hat, v)
    w = w - m / (np.sqrt(v_hat) + epsilon) * alpha
    return m, v, v_hat, w


class Adam(Optimizer):
    """m += (g - m)(1 - b1);  v += (g^2 - v)(1 - b2);  w -= alpha m / (sqrt(v) + eps),
    alpha = lr sqrt(1 - b2^t) / (1 - b1^t), t = iterations + 1 (AMSGrad: v replaced by its running max)."""

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False, **kwargs):
        super().__init__(learning_rate, **kwargs)
        check_fraction("beta_1", beta_1), check_fraction("beta_2", beta_2), _check_positive("epsilon", epsilon)
        self.beta_1, self.beta_2, self.epsilon, self.amsgrad = beta_1, beta_2, epsilon, amsgrad
        self.slot_names = ("m", "v") + (("v_hat",) if amsgrad else ())

    def update(self, w, g, slots, lr):
        t = self.iterations + 1
        alpha = lr * math.sqrt(1 - self.beta_2 ** t) / (1 - self.beta_1 ** t)
        m, v = slots["m"], slots["v"]
        b1c, b2c = 1 - self.beta_1, 1 - self.beta_2
        if self.amsgrad:
            adam_amsgrad(w, g, m, v, slots["v_hat"], b1c, b2c, self.epsilon, alpha)
        else:
            adam(w, g, m, v, b1c, b2c, self.epsilon, alpha)


class AdamW(Adam):
    """Adam with decoupled weight decay (w -= w * weight_decay * lr before each step)."""

    def __init__(self, learning_rate=0.001, weight_decay=0.004, **kwargs):
        super().__init__(learning_rate, weight_decay=weight_decay, **kwargs)


@elementwise(updates=("m", "u", "w"))
def adamax(w, g, m, u, one_minus_b1, b2, epsilon, bias, lr):
    m = m + (g - m) * one_minus_b1
    u = np.maximum(u * b2, np.abs(g))
    w = w - m / ((u + epsilon) * bias) * lr
    return m, u, w


class Adamax(Adam):
    """Adam with the infinity norm: m += (g - m)(1 - b1);  u = max(b2 u, |g|);
    w -= lr m / ((1 - b1^t)(u + eps)), t = iterations + 1."""

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, **kwargs):
        super().__init__(learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, **kwargs)
        del self.amsgrad
        self.slot_names = ("m", "u")

    def update(self, w, g, slots, lr):
        adamax(w, g, slots["m"], slots["u"], 1 - self.beta_1, self.beta_2, self.epsilon,
               1 - self.beta_1 ** (self.iterations + 1), lr)

@elementwise(updates=("m", "v", "w"))
def nadam(w, g, m, v, one_minus_b1, one_minus_b2, m_weight, g_weight, v_bias, epsilon, lr):
    m = m + (g - m) * one_minus_b1
    v = v + (g * g - v) * one_minus_b2
    m_hat = m * m_weight + g * g_weight
    w = w - m_hat / (np.sqrt(v / v_bias) + epsilon) * lr
    return m, v, w


class Nadam(Adam):
    """Adam with Nesterov momentum and Dozat's momentum schedule, as Keras 3 computes it:
    u_t = b1 (1 - 0.5 * 0.96^t), the running product of the u's corrects m's bias."""

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, **kwargs):
        super().__init__(learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, **kwargs)
        del self.amsgrad

    def _momentum(self, step):
        return self.beta_1 * (1 - 0.5 * 0.96 ** step)

    def _momentum_product(self, t):
        """u_1 u_2 ... u_t, carried from the previous step (recomputed after a restore)."""
        cached = getattr(self, "_product", None)
        if cached is None or cached[0] not in (t, t - 1):
            cached = (t, math.prod(self._momentum(k) for k in range(1, t + 1)))
        elif cached[0] == t - 1:
            cached = (t, cached[1] * self._momentum(t))
        self._product = cached
        return cached[1]

    def update(self, w, g, slots, lr):
        t = self.iterations + 1
        u_product = self._momentum_product(t)
        u_t, u_next = self._momentum(t), self._momentum(t + 1)
        nadam(w, g, slots["m"], slots["v"], 1 - self.beta_1, 1 - self.beta_2, u_next / (1 - u_product * u_next),
              (1 - u_t) / (1 - u_product), 1 - self.beta_2 ** t, self.epsilon, lr)
