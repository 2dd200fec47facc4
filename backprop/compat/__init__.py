"""Other frameworks' names for backprop: ``backprop.compat.tensorflow``."""
