"""Models: Sequential stacks and subclassed Models, plus load_model."""
from backprop.layers import core as _core
from backprop.layers.features import TwoInputFeatures as _TwoInputFeatures
from backprop.layers.normalization import BatchNormalization as _BatchNormalization, Normalization as _Normalization
from backprop.models.functional import Functional
from backprop.models.model import Model
from backprop.models.sequential import Sequential
from backprop.saving import load_model, register

for _cls in (_core.Dense, _core.Activation, _core.Dropout, _core.Flatten, _core.InputLayer, _core.Softmax, _TwoInputFeatures,
             _Normalization, _BatchNormalization,
             Sequential, Functional):
    register(_cls.__name__)(_cls)
