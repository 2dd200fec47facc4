"""Safe model files: safetensors weights + JSON architecture, a closed class registry, atomic writes."""
from backprop.saving.registry import register
from backprop.saving.tensor_file import FileFormatError


def load_model(path, custom_objects=None, allow_nonfinite=False, compile=True, device=None):  # noqa: A002
    """Rebuild a model saved with ``model.save(path)`` (see backprop.saving.model_file.load_model), on
    ``device`` ("cpu", "gpu"; default: the current device), whichever device saved it."""
    from backprop import devices
    from backprop.saving.model_file import load_model as load
    with devices.device(devices.current() if device is None else device):
        return load(path, custom_objects, allow_nonfinite, compile)
