"""Native kernels (Cython + C, OpenMP). One module per kernel family:

- ``matmul``: GEMM in the three forms backprop needs, bias add and bias gradient.
- ``activations``: ReLU, sigmoid, tanh, softmax forward and backward.
- ``losses``: fused softmax + cross-entropy, MSE.
- ``optimizers``: SGD (momentum, Nesterov, weight decay) and Adam/AdamW updates.
- ``_runtime``: OpenMP facts (enabled, max threads).

These are internal: they take arrays already validated by the Python layer (right dtype, shape,
C-contiguous outputs) and a thread count.
"""
