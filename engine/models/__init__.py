"""Segmentation networks by name.

``build_model(name, num_classes, in_channels=3, **options)`` returns a ``torch.nn.Module``
mapping float B x C x H x W to logits B x K x H x W at the input's size (any size: the network
pads to the multiple it needs and crops back). ``available_models()`` lists the names,
``model_defaults(name)`` the options, ``model_presets(name)`` named option sets.

Importing this package imports torch: the window imports it lazily.
"""

from engine.models import fcn as _fcn  # noqa: F401  (registers "fcn8s", "fcn16s", "fcn32s")
from engine.models import unet as _unet  # noqa: F401  (registers "unet")
from engine.models.registry import (
    available_models,
    build_model,
    model_defaults,
    model_description,
    model_presets,
    register_model,
    resolve_options,
)

__all__ = ["available_models", "build_model", "model_defaults", "model_description",
           "model_presets", "register_model", "resolve_options"]
