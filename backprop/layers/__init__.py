"""Layers: the base class to subclass, and the built-in ones."""
from backprop.layers.core import Activation, Dense, Dropout, Flatten, Input, InputLayer, Softmax
from backprop.layers.features import TwoInputFeatures
from backprop.layers.layer import Layer
from backprop.layers.normalization import BatchNormalization, Normalization
from backprop.layers.symbolic import SymbolicTensor
