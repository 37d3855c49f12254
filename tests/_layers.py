"""Layer factories and inputs shared by the layer test files."""
import numpy as np

import ranvier as rv
from _reference import check_gradient

# Every activation layer, with the parameter its tests use.
ACTIVATIONS = {"ReLU": rv.ReLU, "Sigmoid": rv.Sigmoid, "Tanh": rv.Tanh, "Softmax": rv.Softmax,
               "LeakyReLU": lambda: rv.LeakyReLU(0.07), "GELU": rv.GELU,
               "ELU": lambda: rv.ELU(0.7)}
# Activations with a kink at 0, where the derivative jumps.
KINKED = {"ReLU", "LeakyReLU", "ELU"}


def act_input(name, rng, shape, dtype=np.float64):
    """N(0, 2) data; for a kinked activation every element at least 0.05 away from the kink."""
    x = rng.normal(0.0, 2.0, size=shape)
    if name in KINKED:
        x = np.sign(x) * (0.05 + np.abs(x))
    return x.astype(dtype)


def check_layer_gradients(layer, x, r, rng):
    """Backward of sum(r * layer(x)) against central differences: the input gradient and every
    parameter's gradient. Returns the input gradient."""
    layer.forward(x)
    dx = layer.backward(r)
    grads = [p.grad.copy() for p in layer.parameters()]

    def objective(_):
        return float(np.sum(r * layer.forward(x)))

    check_gradient(lambda xx: float(np.sum(r * layer.forward(xx))), x.copy(), dx, rng)
    for p, g in zip(layer.parameters(), grads):
        check_gradient(objective, p.data, g, rng)
    return dx
