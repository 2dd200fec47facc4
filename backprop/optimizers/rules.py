"""The update rules, with Keras 3's formulas and defaults, in order of increasing complexity.

Each ``update`` writes into the variable's array and its slot arrays in place.
"""
import math
import numbers

from backprop import devices
from backprop.optimizers.optimizer import Optimizer, _check_positive, check_fraction
from backprop.xp import np


class SGD(Optimizer):
    """v = momentum * v - lr * g;  w += v  (Nesterov: w += momentum * v - lr * g).  Plain: w -= lr * g."""

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, **kwargs):
        super().__init__(learning_rate, **kwargs)
        if not 0 <= momentum <= 1:
            raise ValueError(f"SGD: momentum must be in [0, 1], got {momentum!r}")
        self.momentum, self.nesterov = momentum, nesterov
        self.slot_names = ("momentum",) if momentum else ()

    def update(self, w, g, slots, lr):
        step = np.multiply(g, lr, out=self.scratch(w))
        if not self.momentum:
            w -= step
            return
        v = slots["momentum"]
        v *= self.momentum
        v -= step
        if self.nesterov:
            w -= step
            w += np.multiply(v, self.momentum, out=step)
        else:
            w += v


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
        a, tmp = slots["accumulator"], self.scratch(w)
        a += np.multiply(g, g, out=tmp)
        np.sqrt(np.add(a, self.epsilon, out=tmp), out=tmp)
        np.divide(g, tmp, out=tmp)
        tmp *= lr
        w -= tmp


class RMSprop(Optimizer):
    """s = rho s + (1 - rho) g^2;  step = lr g / sqrt(s - mean_g^2 [centered] + epsilon), with optional momentum."""

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False, **kwargs):
        super().__init__(learning_rate, **kwargs)
        check_fraction("rho", rho), check_fraction("momentum", momentum), _check_positive("epsilon", epsilon)
        self.rho, self.momentum, self.epsilon, self.centered = rho, momentum, epsilon, centered
        self.slot_names = ("velocity",) + (("average_gradient",) if centered else ()) + (
            ("momentum",) if momentum else ())

    def update(self, w, g, slots, lr):
        s, tmp = slots["velocity"], self.scratch(w)
        s *= self.rho
        np.multiply(g, g, out=tmp)
        tmp *= 1 - self.rho
        s += tmp
        if self.centered:
            mean_g = slots["average_gradient"]
            mean_g *= self.rho
            mean_g += np.multiply(g, 1 - self.rho, out=tmp)
            np.subtract(s, np.multiply(mean_g, mean_g, out=tmp), out=tmp)
            tmp += self.epsilon
        else:
            np.add(s, self.epsilon, out=tmp)
        np.sqrt(tmp, out=tmp)
        np.divide(g, tmp, out=tmp)
        tmp *= lr
        if self.momentum:
            m = slots["momentum"]
            m *= self.momentum
            m += tmp
            w -= m
        else:
            w -= tmp


class Adadelta(Optimizer):
    """E[g^2] = rho E[g^2] + (1-rho) g^2;  d = -sqrt(E[d^2] + eps) / sqrt(E[g^2] + eps) g;
    E[d^2] = rho E[d^2] + (1-rho) d^2;  w += lr d."""

    slot_names = ("accumulated_grad", "accumulated_delta")

    def __init__(self, learning_rate=0.001, rho=0.95, epsilon=1e-7, **kwargs):
        super().__init__(learning_rate, **kwargs)
        check_fraction("rho", rho), _check_positive("epsilon", epsilon)
        self.rho, self.epsilon = rho, epsilon

    def update(self, w, g, slots, lr):
        eg2, ed2 = slots["accumulated_grad"], slots["accumulated_delta"]
        delta, tmp = self.scratch(w), self.scratch(w, 1)
        eg2 *= self.rho
        np.multiply(g, g, out=tmp)
        tmp *= 1 - self.rho
        eg2 += tmp
        np.sqrt(np.add(ed2, self.epsilon, out=delta), out=delta)
        delta *= g
        delta /= np.sqrt(np.add(eg2, self.epsilon, out=tmp), out=tmp)
        np.negative(delta, out=delta)
        ed2 *= self.rho
        np.multiply(delta, delta, out=tmp)
        tmp *= 1 - self.rho
        ed2 += tmp
        delta *= lr
        w += delta


class Adam(Optimizer):
    """m += (g - m)(1 - b1);  v += (g^2 - v)(1 - b2);  w -= alpha m / (sqrt(v) + eps),
    alpha = lr sqrt(1 - b2^t) / (1 - b1^t), t = iterations + 1 (AMSGrad: v replaced by its running max)."""

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False, **kwargs):
        super().__init__(learning_rate, **kwargs)
        check_fraction("beta_1", beta_1), check_fraction("beta_2", beta_2), _check_positive("epsilon", epsilon)
        self.beta_1, self.beta_2, self.epsilon, self.amsgrad = beta_1, beta_2, epsilon, amsgrad
        self.slot_names = ("m", "v") + (("v_hat",) if amsgrad else ())

    def update_moments(self, g, m, v, tmp):
        """m += (g - m)(1 - b1);  v += (g^2 - v)(1 - b2), in place (``tmp`` is scratch)."""
        np.subtract(g, m, out=tmp)
        tmp *= 1 - self.beta_1
        m += tmp
        np.multiply(g, g, out=tmp)
        tmp -= v
        tmp *= 1 - self.beta_2
        v += tmp

    # On a GPU the whole update is one kernel; it computes what update_moments and update write in NumPy
    # (to float32 precision: the compiler may fuse a multiply and an add).
    FUSED = ("T g, T b1c, T b2c, T eps, T alpha", "T w, T m, T v", """
        T m_new = m + (g - m) * b1c;
        T v_new = v + (g * g - v) * b2c;
        m = m_new;
        v = v_new;
        w = w - m_new / (sqrt(v_new) + eps) * alpha;
    """)

    def update(self, w, g, slots, lr):
        t = self.iterations + 1
        alpha = lr * math.sqrt(1 - self.beta_2 ** t) / (1 - self.beta_1 ** t)
        m, v = slots["m"], slots["v"]
        fused = None if self.amsgrad else devices.elementwise_kernel(w, "adam", *self.FUSED)
        if fused is not None:  # pragma: no cover - needs a GPU
            scalar = w.dtype.type
            fused(g, scalar(1 - self.beta_1), scalar(1 - self.beta_2), scalar(self.epsilon), scalar(alpha), w, m, v)
            return
        tmp = self.scratch(w)
        self.update_moments(g, m, v, tmp)
        if self.amsgrad:
            np.maximum(slots["v_hat"], v, out=slots["v_hat"])
            v = slots["v_hat"]
        np.sqrt(v, out=tmp)
        tmp += self.epsilon
        np.divide(m, tmp, out=tmp)
        tmp *= alpha
        w -= tmp


class AdamW(Adam):
    """Adam with decoupled weight decay (w -= w * weight_decay * lr before each step)."""

    def __init__(self, learning_rate=0.001, weight_decay=0.004, **kwargs):
        super().__init__(learning_rate, weight_decay=weight_decay, **kwargs)


class Adamax(Adam):
    """Adam with the infinity norm: m += (g - m)(1 - b1);  u = max(b2 u, |g|);
    w -= lr m / ((1 - b1^t)(u + eps)), t = iterations + 1."""

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, **kwargs):
        super().__init__(learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, **kwargs)
        del self.amsgrad
        self.slot_names = ("m", "u")

    def update(self, w, g, slots, lr):
        m, u, tmp = slots["m"], slots["u"], self.scratch(w)
        np.subtract(g, m, out=tmp)
        tmp *= 1 - self.beta_1
        m += tmp
        u *= self.beta_2
        np.maximum(u, np.abs(g, out=tmp), out=u)
        np.add(u, self.epsilon, out=tmp)
        tmp *= 1 - self.beta_1 ** (self.iterations + 1)
        np.divide(m, tmp, out=tmp)
        tmp *= lr
        w -= tmp


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
        m, v, tmp, m_hat = slots["m"], slots["v"], self.scratch(w), self.scratch(w, 1)
        self.update_moments(g, m, v, tmp)
        np.multiply(m, u_next / (1 - u_product * u_next), out=m_hat)
        m_hat += np.multiply(g, (1 - u_t) / (1 - u_product), out=tmp)
        np.divide(v, 1 - self.beta_2 ** t, out=tmp)
        np.sqrt(tmp, out=tmp)
        tmp += self.epsilon
        np.divide(m_hat, tmp, out=tmp)
        tmp *= lr
        w -= tmp
