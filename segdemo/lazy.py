"""Modules imported on first use, so the page can be served before TensorFlow (about 5 s to import) is."""

import importlib


class LazyModule:
    """Stands for a module until an attribute is read; then imports it (thread-safe: Python's import lock)
    and reads the attribute from it. `tf = LazyModule("tensorflow")` keeps `tf.xxx` code unchanged."""

    def __init__(self, name):
        self._name = name

    def __getattr__(self, attribute):
        return getattr(importlib.import_module(self._name), attribute)

    def __repr__(self):
        return f"<lazy module {self._name}>"
