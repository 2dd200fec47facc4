"""A hand-fused NumPy training step for an MLP with ReLU hidden layers, softmax cross-entropy and Adam.

This is the yardstick: what a careful person writes by hand, with no framework in between.
Parameters, gradients and Adam moments each live in one flat float32 buffer.
"""
import math

import numpy as np


class FusedMLP:
    def __init__(self, weights, lr=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
        """``weights``: [W1, b1, W2, b2, ...] as float32 arrays (copied into one flat buffer)."""
        sizes = [w.size for w in weights]
        self.flat = np.concatenate([w.ravel() for w in weights]).astype(np.float32)
        self.grad = np.zeros_like(self.flat)
        self.m, self.v, self.tmp = np.zeros_like(self.flat), np.zeros_like(self.flat), np.zeros_like(self.flat)
        offsets = np.cumsum([0] + sizes)
        self.params = [self.flat[a:b].reshape(w.shape) for a, b, w in zip(offsets, offsets[1:], weights)]
        self.grads = [self.grad[a:b].reshape(w.shape) for a, b, w in zip(offsets, offsets[1:], weights)]
        self.lr, self.b1, self.b2, self.eps, self.t = lr, beta_1, beta_2, epsilon, 0

    def step(self, x, y):
        params, grads = self.params, self.grads
        n_layers = len(params) // 2
        activations = [x]
        h = x
        for i in range(n_layers):
            z = h @ params[2 * i]
            z += params[2 * i + 1]
            if i < n_layers - 1:
                np.maximum(z, 0, out=z)
            activations.append(z)
            h = z
        z = h
        z -= z.max(axis=1, keepdims=True)
        np.exp(z, out=z)
        z /= z.sum(axis=1, keepdims=True)
        loss = -np.log(z[np.arange(len(y)), y] + 1e-30).mean()
        z[np.arange(len(y)), y] -= 1
        z /= len(y)
        g = z
        for i in reversed(range(n_layers)):
            np.matmul(activations[i].T, g, out=grads[2 * i])
            np.sum(g, axis=0, out=grads[2 * i + 1])
            if i:
                g = g @ params[2 * i].T
                g *= activations[i] > 0
        self.adam()
        return loss

    def adam(self):
        self.t += 1
        alpha = self.lr * math.sqrt(1 - self.b2 ** self.t) / (1 - self.b1 ** self.t)
        m, v, g, tmp = self.m, self.v, self.grad, self.tmp
        m *= self.b1
        np.multiply(g, 1 - self.b1, out=tmp)
        m += tmp
        v *= self.b2
        np.multiply(g, g, out=tmp)
        tmp *= 1 - self.b2
        v += tmp
        np.sqrt(v, out=tmp)
        tmp += self.eps
        np.divide(m, tmp, out=tmp)
        tmp *= alpha
        self.flat -= tmp
