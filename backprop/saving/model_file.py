"""Model files (``.bp``): one safetensors file holding the weights, with the architecture as JSON metadata.

Nothing in a file is ever executed or imported: classes are looked up in the closed registry,
weights are raw numbers. Loads validate everything first and assign nothing on any error.
"""
import json

from backprop import __version__
from backprop.saving import tensor_file
from backprop.saving.registry import lookup, registered_name
from backprop.saving.tensor_file import FileFormatError

FORMAT_VERSION = 1
MODEL_FORMAT = "backprop.model"
WEIGHTS_FORMAT = "backprop.weights"


def weight_paths(layer, prefix="", unique=True):
    """(path, variable) pairs in the order of ``layer.variables``: 'dense/kernel' in a Sequential (layer
    names, which the config keeps), 'block/hidden/bias' in a subclassed model (attribute names).
    A name used twice is an error unless ``unique`` is False."""
    pairs, seen = [], set()

    def walk(current, path):
        for variable in current._weights:
            if id(variable) not in seen:
                seen.add(id(variable))
                pairs.append((f"{path}{variable.name}", variable))
        for sublayer in current._layers:
            walk(sublayer, f"{path}{current._key_of(sublayer)}/")

    walk(layer, prefix)
    names = [name for name, _ in pairs]
    if unique and len(set(names)) != len(names):
        duplicates = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"cannot save: several weights are named {', '.join(duplicates)}; give layers unique names")
    return pairs


def _metadata(model, kind):
    metadata = {"format": kind, "format_version": str(FORMAT_VERSION), "backprop_version": __version__}
    if kind == MODEL_FORMAT:
        metadata["config"] = json.dumps({"class_name": registered_name(model), "config": model.get_config()})
        shape = getattr(model, "_build_input_shape", None)
        metadata["build_input_shape"] = json.dumps(None if shape is None else [None] + list(shape[1:]))
        compile_config = model.get_compile_config() if hasattr(model, "get_compile_config") else None
        if compile_config is not None:
            metadata["compile_config"] = json.dumps(compile_config)
        if getattr(model, "preprocessing", None) is not None:  # how raw rows become inputs (backprop train)
            metadata["preprocessing"] = json.dumps(model.preprocessing)
    return metadata


def save_model(model, path):
    """Write architecture + weights atomically (temporary file, fsync, rename)."""
    if not model.built:
        raise ValueError(f"cannot save model '{model.name}' before it is built: call it on data first")
    metadata = _metadata(model, MODEL_FORMAT)
    tensor_file.write(path, {name: v.numpy() for name, v in weight_paths(model)}, metadata)


def save_weights(model, path):
    tensor_file.write(path, {name: v.numpy() for name, v in weight_paths(model)}, _metadata(model, WEIGHTS_FORMAT))


def _read(path, expected_kinds, allow_nonfinite):
    tensors, metadata = tensor_file.read(path, allow_nonfinite=allow_nonfinite)
    kind = metadata.get("format")
    if kind not in expected_kinds:
        raise FileFormatError(f"{path}: not a backprop model file (format {kind!r}; expected {' or '.join(expected_kinds)})")
    try:
        version = int(metadata.get("format_version", ""))
    except ValueError:
        raise FileFormatError(f"{path}: malformed format version {metadata.get('format_version')!r}") from None
    if version > FORMAT_VERSION:
        raise FileFormatError(f"{path}: file format {version} is newer than supported {FORMAT_VERSION}; "
                              "upgrade backprop to load it")
    return tensors, metadata


def load_model(path, custom_objects=None, allow_nonfinite=False, compile=True):  # noqa: A002 - Keras' name
    """Rebuild a model saved with ``model.save(path)``; custom classes must be registered or passed.

    A model saved after ``compile`` comes back compiled (same loss, metrics and optimizer settings;
    the optimizer's state starts fresh)."""
    tensors, metadata = _read(path, (MODEL_FORMAT,), allow_nonfinite)
    try:
        spec = json.loads(metadata["config"])
        shape = json.loads(metadata.get("build_input_shape", "null"))
        cls = lookup(spec["class_name"], custom_objects)
        config = spec["config"]
    except FileFormatError:
        raise
    except ValueError as error:  # unknown class: the message says how to register it
        raise FileFormatError(f"{path}: {error}") from None
    except (KeyError, TypeError, json.JSONDecodeError) as error:
        raise FileFormatError(f"{path}: malformed model config ({error})") from None
    model = _rebuild(cls, config, shape, custom_objects, path)
    _assign(model, tensors, path)
    if "preprocessing" in metadata:
        try:
            model.preprocessing = json.loads(metadata["preprocessing"])
        except json.JSONDecodeError as error:
            raise FileFormatError(f"{path}: malformed preprocessing ({error})") from None
    if compile and "compile_config" in metadata:
        try:
            model.compile_from_config(json.loads(metadata["compile_config"]))
        except (KeyError, TypeError, ValueError) as error:
            raise FileFormatError(f"{path}: malformed compile config ({error})") from None
    return model


def _rebuild(cls, config, shape, custom_objects, path):
    from backprop.models.functional import Functional
    from backprop.models.sequential import Sequential
    try:
        model = cls.from_config(config, custom_objects) if issubclass(cls, (Sequential, Functional)) \
            else cls.from_config(config)
        if shape is not None:
            model.build(tuple(shape))
        return model
    except FileFormatError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError, IndexError) as error:
        raise FileFormatError(f"{path}: cannot rebuild the model from its config: {error}") from None


def load_weights(model, path, allow_nonfinite=False):
    """Load weights saved by save_weights or save into a model of the same architecture."""
    tensors, _ = _read(path, (MODEL_FORMAT, WEIGHTS_FORMAT), allow_nonfinite)
    _assign(model, tensors, path)


def _assign(model, tensors, path):
    """Check every name and shape first, report all mismatches at once, then assign everything."""
    pairs = weight_paths(model)
    expected = {name for name, _ in pairs}
    problems = [f"size mismatch for {name}: file {tensors[name].shape}, model {v.shape}"
                for name, v in pairs if name in tensors and tensors[name].shape != v.shape]
    missing = [name for name, _ in pairs if name not in tensors]
    unexpected = [name for name in tensors if name not in expected]
    if missing:
        problems.append(f"missing in file: {', '.join(missing)}")
    if unexpected:
        problems.append(f"unexpected in file: {', '.join(unexpected)}")
    if problems:
        raise FileFormatError(f"{path}: the file does not fit model '{model.name}': " + "; ".join(problems))
    for name, variable in pairs:
        variable.assign(tensors[name].astype(variable.dtype, copy=False))
