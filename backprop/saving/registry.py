"""The closed registry of classes a model file may name.

A file says ``"class_name": "Dense"``; only names registered here (the built-in layers
and models, plus what the user registers) can be instantiated. Nothing is ever imported
from a name found in a file.
"""
import contextlib
import contextvars

_REGISTRY = {}
_custom_objects = contextvars.ContextVar("backprop_custom_objects", default=None)


def register(name=None):
    """Class decorator: ``@bp.saving.register("MyModel")`` lets load_model rebuild that class."""
    def decorate(cls):
        _REGISTRY[name or cls.__name__] = cls
        cls._registered_name = name or cls.__name__
        return cls
    return decorate


def registered_name(obj):
    cls = type(obj)
    name = cls.__dict__.get("_registered_name", cls.__name__)
    if _REGISTRY.get(name) is not cls:
        raise ValueError(f"class {cls.__name__} is not registered, so a saved file could not rebuild it; "
                         f"decorate it with @bp.saving.register('{cls.__name__}')")
    return name


@contextlib.contextmanager
def custom_objects(classes):
    """Within this, ``lookup`` finds ``classes`` (a name -> class dict, load_model's custom_objects) too."""
    token = _custom_objects.set(classes or None)
    try:
        yield
    finally:
        _custom_objects.reset(token)


def lookup(name, custom_objects=None):
    for extra in (custom_objects, _custom_objects.get()):
        if extra and name in extra:
            return extra[name]
    if name in _REGISTRY:
        return _REGISTRY[name]
    raise ValueError(f"unknown class {name!r} in the model file: register it with "
                     f"@bp.saving.register({name!r}) or pass custom_objects={{{name!r}: cls}} to load_model")
