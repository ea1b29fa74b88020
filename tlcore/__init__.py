"""Transfer Lab core: backbones, data, training and evaluation, without any UI.

The few names most programs need are here, loaded when first used, so that ``import tlcore`` does not import
TensorFlow (a command that only lists, checks or cleans starts in a fraction of a second)::

    import tlcore

    summary = tlcore.train("photos/", tlcore.TrainConfig(epochs=10), out="run")
    run = tlcore.load_run("run")
"""
import importlib
import os

# TensorFlow prints start-up noise on stderr; the CLI promises one clear line on errors.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"

# Public name -> the module that defines it.
_PUBLIC = {
    "TrainConfig": "tlcore.training.config",
    "train": "tlcore.training.pipeline",
    "fine_tune": "tlcore.training.pipeline",
    "load_run": "tlcore.models.run",
    "ExportConfig": "tlcore.export.formats",
    "export_formats": "tlcore.export.formats",
    "list_backbones": "tlcore.backbones.registry",
    "create_backbone": "tlcore.backbones.registry",
    "check_dataset": "tlcore.data.health",
    "TLError": "tlcore.io.errors",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str):
    """The public names, imported on first use (PEP 562)."""
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'tlcore' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__():
    return sorted(__all__)
