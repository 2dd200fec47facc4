"""Names for layers, losses and metrics, following Keras' conventions."""
import re
import threading

_counts = {}
_lock = threading.Lock()  # two threads creating layers never get the same name


def snake_case(name):
    """Keras' rule: 'SparseCategoricalCrossentropy' -> 'sparse_categorical_crossentropy', 'AUC' -> 'auc',
    'MLP' -> 'mlp', 'MyHTTPLayer' -> 'my_http_layer'."""
    name = re.sub(r"\W+", "", name)
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def unique_name(base):
    """'dense', 'dense_1', 'dense_2', ... within this process."""
    with _lock:
        count = _counts.get(base, 0)
        _counts[base] = count + 1
    return base if count == 0 else f"{base}_{count}"
