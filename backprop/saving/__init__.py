"""Safe model files: safetensors weights + JSON architecture, a closed class registry, atomic writes."""
from backprop.saving.registry import register
from backprop.saving.tensor_file import FileFormatError


def load_model(path, custom_objects=None, allow_nonfinite=False, compile=True):  # noqa: A002
    """Rebuild a model saved with ``model.save(path)`` (see backprop.saving.model_file.load_model)."""
    from backprop.saving.model_file import load_model as load
    return load(path, custom_objects, allow_nonfinite, compile)
