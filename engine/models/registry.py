"""Networks by name: one keyword-only builder per architecture, registered once.

Every builder is called as ``builder(*, num_classes, in_channels, **options)`` and returns a
module mapping float B x C x H x W to logits B x K x H x W at the input's size. Options are
checked against the architecture's declared defaults, so a typo in a settings file is an error
naming the option instead of an ignored keyword.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from engine.errors import UserError
from engine.labels import MAX_CLASSES


@dataclass(frozen=True)
class ModelSpec:
    name: str
    builder: Callable[..., Any]
    defaults: dict[str, Any]
    presets: dict[str, dict[str, Any]] = field(default_factory=dict)
    description: str = ""


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(name: str, *, defaults: dict[str, Any],
                   presets: dict[str, dict[str, Any]] | None = None,
                   description: str = "") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator registering a keyword-only builder under ``name`` (a duplicate is an error)."""

    def decorate(builder: Callable[..., Any]) -> Callable[..., Any]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        for preset, values in (presets or {}).items():
            unknown = set(values) - set(defaults)
            if unknown:
                raise ValueError(f"preset {preset!r} of {name!r} sets unknown options {sorted(unknown)}")
        _REGISTRY[name] = ModelSpec(name, builder, dict(defaults), dict(presets or {}), description)
        return builder

    return decorate


def _spec(name: str) -> ModelSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(available_models())
        raise UserError(f"unknown model {name!r}; known models: {known}") from None


def available_models() -> list[str]:
    return sorted(_REGISTRY)


def model_defaults(name: str) -> dict[str, Any]:
    """The options ``build_model(name, ...)`` uses when given none (a fresh copy)."""
    return dict(_spec(name).defaults)


def model_presets(name: str) -> dict[str, dict[str, Any]]:
    """Named option sets (e.g. ``{"light": {...}, "wide": {...}}``), chosen with ``preset=``."""
    return {k: dict(v) for k, v in _spec(name).presets.items()}


def model_description(name: str) -> str:
    return _spec(name).description


def resolve_options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """Defaults, then the named preset, then explicit options; unknown keys are a UserError."""
    spec = _spec(name)
    options = dict(options)
    resolved = dict(spec.defaults)
    preset = options.pop("preset", None)
    if preset is not None:
        if preset not in spec.presets:
            known = ", ".join(sorted(spec.presets)) or "none"
            raise UserError(f"model {name}: unknown preset {preset!r}; known presets: {known}")
        resolved.update(spec.presets[preset])
    unknown = sorted(set(options) - set(spec.defaults))
    if unknown:
        known = ", ".join(sorted(spec.defaults))
        raise UserError(f"model {name}: unknown option(s) {', '.join(unknown)}; known options: {known}")
    resolved.update(options)
    return resolved


def build_model(name: str, num_classes: int, in_channels: int = 3, **options: Any):
    """Build the registered network ``name`` (see :func:`available_models`)."""
    spec = _spec(name)
    if not isinstance(num_classes, int) or not 1 <= num_classes <= MAX_CLASSES:
        raise UserError(f"model {name}: number of classes must be 1..{MAX_CLASSES}, not {num_classes!r}")
    if not isinstance(in_channels, int) or in_channels < 1:
        raise UserError(f"model {name}: input channels must be a positive integer, not {in_channels!r}")
    resolved = resolve_options(name, options)
    model = spec.builder(num_classes=num_classes, in_channels=in_channels, **resolved)
    # What a checkpoint must store to rebuild this network exactly, whatever defaults become.
    model.maskloop_name = name
    model.maskloop_options = resolved
    return model
