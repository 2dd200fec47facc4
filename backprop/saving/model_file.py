"""Model files (``.bp``): one safetensors file holding the weights, with the architecture as JSON metadata.

Nothing in a file is ever executed or imported: classes are looked up in the closed registry,
weights are raw numbers. Loads validate everything first and assign nothing on any error.
"""
import json
import math
import os
import re

from backprop.layers.layer import weight_paths
from backprop.version import __version__
from backprop.saving import bounded_json, tensor_file
from backprop.saving import registry
from backprop.saving.registry import lookup, registered_name
from backprop.saving.tensor_file import FileFormatError

FORMAT_VERSION = 1
MODEL_FORMAT = "backprop.model"
WEIGHTS_FORMAT = "backprop.weights"


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


KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")


def check_suffix(path, what="model.save"):
    """Refuse Keras' file names: a '.keras' or '.h5' file in backprop's format would look like a file Keras can
    open and is not (a silent surprise on the day it is shared)."""
    name = os.fspath(path)
    if name.lower().endswith(KERAS_SUFFIXES):
        suggested = re.sub(r"(\.weights)?\.(keras|h5|hdf5)$", ".bp", name, flags=re.IGNORECASE)
        raise ValueError(f"{what}: '{name}' is a Keras file name, but backprop writes its own format (safetensors "
                         f"with the architecture), which Keras cannot open; name it '{suggested}'")
    return path


def save_model(model, path):
    """Write architecture + weights atomically (temporary file, fsync, rename)."""
    tensor_file.atomic_write(check_suffix(path), _model_chunks(model))


def model_bytes(model):
    """What ``save_model`` would write, as bytes (a download that never touches the disk)."""
    return b"".join(_model_chunks(model))


def _model_chunks(model):
    if not model.built:
        raise ValueError(f"cannot save model '{model.name}' before it is built: call it on data first")
    return tensor_file.encode({name: v.numpy() for name, v in weight_paths(model)}, _metadata(model, MODEL_FORMAT))


def save_weights(model, path):
    check_suffix(path, "save_weights")
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
        spec = bounded_json.loads(metadata["config"], what="config")
        shape = bounded_json.loads(metadata.get("build_input_shape", "null"), what="build_input_shape")
        check_architecture(spec, shape, tensors)
        cls = lookup(spec["class_name"], custom_objects)
        config = spec["config"]
    except FileFormatError:
        raise
    except (KeyError, TypeError, AttributeError, IndexError) as error:  # a hostile structure
        raise FileFormatError(f"{path}: malformed model config ({type(error).__name__}: {error})") from None
    except ValueError as error:  # a limit, a hostile value, or an unknown class (the message says how to register)
        raise FileFormatError(f"{path}: {error}") from None
    model = _rebuild(cls, config, shape, custom_objects, path)
    _assign(model, tensors, path)
    if "preprocessing" in metadata:
        try:
            model.preprocessing = bounded_json.loads(metadata["preprocessing"], what="preprocessing")
        except ValueError as error:
            raise FileFormatError(f"{path}: malformed preprocessing ({error})") from None
    if compile and "compile_config" in metadata:
        try:
            model.compile_from_config(bounded_json.loads(metadata["compile_config"], what="compile config"))
        except (KeyError, TypeError, ValueError) as error:
            raise FileFormatError(f"{path}: malformed compile config ({error})") from None
    return model


SIZE_KEYS = ("units", "input_dim")
SHAPE_KEYS = ("shape", "input_shape", "batch_input_shape")
MIN_SIZE_LIMIT = 1 << 16  # what a model without stored weights (Dropout, Flatten) may still ask for


def check_architecture(spec, build_shape, tensors):
    """Refuse an architecture that would allocate more than the file holds, before anything is built.

    Every size (``units``) and every shape's element count must be at most the number of values stored
    in the file (or a small limit for weightless models), layers are bounded in number, and sizes are
    whole numbers, never booleans, floats or strings."""
    stored = sum(int(array.size) for array in tensors.values())
    limit = max(stored, MIN_SIZE_LIMIT)
    layers = []

    def size(value, where):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where}: {value!r} is not a whole number")
        if not 0 < value <= limit:
            raise ValueError(f"{where}: {value} is {'not positive' if value <= 0 else 'larger than the file'}"
                             f" (it stores {stored:,} values)")

    def shape(value, where):
        if not isinstance(value, list) or len(value) > 8:
            raise ValueError(f"{where}: {value!r} is not a shape of at most 8 dimensions")
        count = 1
        for i, dim in enumerate(value):
            if dim is None and i == 0 and where.endswith(("batch_input_shape", "build_input_shape")):
                continue
            size(dim, f"{where}[{i}]")
            count *= dim
            if count > limit:
                raise ValueError(f"{where}: {value} has more elements than the file stores ({stored:,})")

    def walk(node, where):
        if isinstance(node, dict):
            if "class_name" in node:
                layers.append(where)
                if node["class_name"] == "Dense" and isinstance(node.get("config"), dict):
                    dense_matches_its_kernel(node["config"], tensors)
            for key, value in node.items():
                path = f"{where}.{key}" if where else str(key)
                if key in SIZE_KEYS:
                    size(value, path)
                elif key in SHAPE_KEYS and value is not None:
                    shape(value, path)
                else:
                    walk(value, path)
        elif isinstance(node, list):
            for i, item in enumerate(node):
                walk(item, f"{where}[{i}]")

    walk(spec, "")
    if build_shape is not None:
        shape(build_shape, "build_input_shape")
    check_feature_widths(spec, build_shape, tensors)
    if len(layers) > max(1024, 4 * len(tensors)):
        raise ValueError(f"the config has {len(layers):,} layers for {len(tensors)} stored tensors")


def _kernel(name, tensors):
    keys = [k for k in tensors if k == f"{name}/kernel" or k.endswith(f"/{name}/kernel")]
    return tuple(tensors[keys[0]].shape) if len(keys) == 1 else None


def _output_shape(class_name, config, shape, tensors):
    """A built-in layer's output example shape from its input's, checking a Dense kernel's input width;
    None when unknown (a custom layer: checked after its bounded build)."""
    if shape is None:
        return None
    if class_name == "Dense":
        kernel = _kernel(config.get("name"), tensors)
        if kernel is not None and (not shape or shape[-1] != kernel[0]):
            raise ValueError(f"{config.get('name')}: inputs of width {shape[-1] if shape else None} do not match "
                             f"the stored kernel {kernel}")
        return shape[:-1] + [config.get("units")]
    if class_name == "Flatten":
        return [math.prod(shape)]
    if class_name in ("Dropout", "Activation", "Softmax"):
        return shape
    return None


def check_feature_widths(spec, build_shape, tensors):
    """Follow the example shape through a Sequential or functional model's built-in layers, so that every
    Dense kernel the model would build has exactly the stored kernel's shape: never larger than the file."""
    config = spec.get("config") if isinstance(spec, dict) else None
    if not isinstance(config, dict):
        return
    if spec.get("class_name") == "Sequential":
        shape = list(build_shape[1:]) if isinstance(build_shape, list) else config.get("input_shape")
        for layer in config.get("layers", []):
            layer_config = layer.get("config", {})
            if layer.get("class_name") == "InputLayer":
                shape = list(layer_config.get("shape") or [])
                continue
            shape = _output_shape(layer.get("class_name"), layer_config, shape, tensors)
    elif spec.get("class_name") == "Functional":
        layers, shapes = config.get("layers", []), []
        for node in config.get("nodes", []):
            layer = layers[node["layer"]]
            inputs = [shapes[i] for i in node["inputs"]]
            if layer.get("class_name") == "InputLayer":
                shapes.append(list(layer["config"].get("shape") or []))
            else:
                shapes.append(_output_shape(layer.get("class_name"), layer.get("config", {}),
                                            inputs[0] if len(inputs) == 1 else None, tensors))


def dense_matches_its_kernel(config, tensors):
    """A Dense layer's ``units`` must be exactly the width of the kernel stored under its name."""
    name, units = config.get("name"), config.get("units")
    if not isinstance(name, str):
        return  # reported when the layer is built
    keys = [k for k in tensors if k == f"{name}/kernel" or k.endswith(f"/{name}/kernel")]
    if len(keys) != 1:
        raise ValueError(f"{name}: the file stores {'no' if not keys else len(keys)} kernel(s) for this Dense layer")
    stored = tuple(tensors[keys[0]].shape)
    if len(stored) != 2 or units != stored[1]:
        raise ValueError(f"{name}.units: {units!r} does not match the stored kernel {stored}")


def _rebuild(cls, config, shape, custom_objects, path):
    try:
        with registry.custom_objects(custom_objects):  # the layers of a Sequential or Functional are looked up too
            model = cls.from_config(config)
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


def _by_position_if_only_layer_names_differ(pairs, tensors):
    """The file's arrays under the model's names when the two differ only in trailing ``_N`` counters: as
    many weights, in the same order, with the same names once the counters are dropped (shapes are checked
    after; a hand-named block_1 matches block_2 too). Automatic names count up per process, so a model built twice has dense_2 where the file has
    dense; Keras 3 finds weights by their place in the model, not by these names."""
    names = list(tensors)
    if set(names) == {name for name, _ in pairs} or len(names) != len(pairs):
        return tensors  # every name matches (in any order): by name
    if any(_without_counters(name) != _without_counters(saved) for (name, _), saved in zip(pairs, names)):
        return tensors
    return {name: tensors[saved] for (name, _), saved in zip(pairs, names)}


def _without_counters(path):
    return re.sub(r"_\d+(?=/|$)", "", path)


def _assign(model, tensors, path):
    """Check every name and shape first, report all mismatches at once, then assign everything."""
    try:
        pairs = weight_paths(model)
    except ValueError as error:  # two layers of one name in a (hostile) config
        raise FileFormatError(f"{path}: {error}") from None
    tensors = _by_position_if_only_layer_names_differ(pairs, tensors)
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
