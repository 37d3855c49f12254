"""ranvier: neural networks on the CPU, with Cython/C/OpenMP kernels under a small Python API.

    import ranvier as rv
    model = rv.Sequential([rv.Dense(64, 128), rv.ReLU(), rv.Dense(128, 10)])
    model.fit(X, y, loss=rv.CrossEntropyLoss(), optimizer="adam", epochs=10)
"""
__version__ = "0.1.0"

from ._config import (get_flush_denormal, get_isa, get_num_threads, set_flush_denormal,  # noqa: E402
                      set_isa, set_num_threads, show_config)
from ._random import manual_seed  # noqa: E402
from .layers import Dense, Layer, Parameter, ReLU, Sigmoid, Softmax, Tanh  # noqa: E402
from .layers import ELU, GELU, Activation, BatchNorm1d, Dropout, Flatten, LeakyReLU  # noqa: E402
from .layers import Conv2d, SiLU, register_layer  # noqa: E402
from .layers import AdaptiveAvgPool2d, AvgPool2d, BatchNorm2d, Dropout2d, MaxPool2d  # noqa: E402
from .losses import (BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, HuberLoss,  # noqa: E402
                     L1Loss, Loss, MSELoss)
from .history import History  # noqa: E402
from .model import Sequential  # noqa: E402
from .optim import (SGD, Adagrad, Adam, AdamW, Optimizer, RMSprop,  # noqa: E402
                    clip_grad_norm)
from .schedulers import (CosineAnnealingLR, ExponentialLR, LinearLR, LRScheduler,  # noqa: E402
                         ReduceLROnPlateau, SequentialLR, StepLR)
from . import datasets  # noqa: E402
from .callbacks import (Callback, EarlyStopping, LearningRateScheduler,  # noqa: E402
                        ModelCheckpoint, TerminateOnNaN)
from .io import load  # noqa: E402

from ._config import (_apply_flush_denormal_from_env, _apply_gemm_blocking_from_env,  # noqa: E402
                      _apply_isa_from_env)

_apply_isa_from_env()
_apply_flush_denormal_from_env()
_apply_gemm_blocking_from_env()
del _apply_isa_from_env, _apply_flush_denormal_from_env, _apply_gemm_blocking_from_env

__all__ = [
    "__version__", "show_config", "set_num_threads", "get_num_threads", "get_isa", "set_isa",
    "set_flush_denormal", "get_flush_denormal", "manual_seed",
    "Parameter", "Layer", "Activation", "Dense", "ReLU", "Sigmoid", "Tanh", "Softmax",
    "LeakyReLU", "GELU", "ELU", "SiLU", "Dropout", "BatchNorm1d", "Flatten", "Conv2d",
    "register_layer", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "BatchNorm2d", "Dropout2d",
    "Loss", "CrossEntropyLoss", "MSELoss", "BCEWithLogitsLoss", "BCELoss", "HuberLoss", "L1Loss",
    "Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "clip_grad_norm",
    "LRScheduler", "StepLR", "ExponentialLR", "CosineAnnealingLR", "LinearLR", "SequentialLR",
    "ReduceLROnPlateau",
    "Sequential", "History", "datasets", "load",
    "Callback", "EarlyStopping", "ModelCheckpoint", "TerminateOnNaN", "LearningRateScheduler",
]
