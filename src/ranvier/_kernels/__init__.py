"""Native kernels (Cython + C, OpenMP). One module per kernel family:

- ``matmul``: GEMM in the three forms backprop needs, bias add and bias gradient.
- ``activations``: ReLU, sigmoid, tanh (C kernels per ISA in csrc/elementwise*), softmax, LeakyReLU,
  GELU, ELU, dropout, forward and backward.
- ``losses``: fused softmax + cross-entropy, MSE.
- ``optimizers``: SGD, Adam/AdamW, RMSprop, Adagrad updates, gradient-norm clipping.
- ``norm``: batch normalisation forward and backward.
- ``_runtime``: OpenMP facts (enabled, max threads).

These are internal: they take arrays already validated by the Python layer (right dtype, shape,
C-contiguous outputs) and a thread count.
"""
