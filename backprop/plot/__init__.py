"""Pictures of what a network does (matplotlib; every function returns a Figure and never calls show()).

Needs the ``plot`` extra: ``pip install 'backprop[plot]'``.
"""
from backprop.plot.boundaries import decision_boundary, perceptron
from backprop.plot.graph import graph
from backprop.plot.lessons import (activation_functions, fits, learning_rates, loss_landscape, network_landscape,
                                   optimizers)
from backprop.plot.training import confusion_matrix, history
