"""backprop's version (a module of its own, so a file format can name it without importing the package)."""
__version__ = "0.1.0"
