"""Layers, one file per family: dense.py, conv.py, activations.py (the activation table's layers and
Softmax), dropout.py, normalization.py, pooling.py, reshape.py; base.py holds the Layer protocol,
Parameter and the registry that saved files use."""
from .activations import ELU, GELU, Activation, LeakyReLU, ReLU, Sigmoid, SiLU, Softmax, Tanh
from .base import Layer, Parameter, layer_class, register_layer
from .conv import Conv2d
from .dense import Dense
from .dropout import Dropout, Dropout2d
from .normalization import BatchNorm1d, BatchNorm2d
from .pooling import AdaptiveAvgPool2d, AvgPool2d, MaxPool2d
from .reshape import Flatten

__all__ = ["Parameter", "Layer", "Activation", "Dense", "ReLU", "Sigmoid", "Tanh", "Softmax",
           "LeakyReLU", "GELU", "ELU", "SiLU", "Dropout", "BatchNorm1d", "Flatten", "Conv2d",
           "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "BatchNorm2d", "Dropout2d",
           "register_layer", "layer_class"]
