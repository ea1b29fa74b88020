"""Pretrained backbones: the registry (:mod:`.registry`) and the builders it lists.

Importing the package imports every builder module, whose ``@register_backbone`` decorators fill the registry (as
timm's model modules do), so whoever asks the registry finds every backbone.
"""
from . import efficientnet_lite, keras_apps  # noqa: F401
