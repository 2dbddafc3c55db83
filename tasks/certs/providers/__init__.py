"""DNS providers, one module each. `get(type)` returns the class for a
`dns_providers.type`; adding a provider means adding one module to this package."""

from __future__ import annotations

import importlib
import pkgutil

from ..errors import ConfigurationError
from .base import Provider

_registry: dict[str, type[Provider]] = {}


def register(cls: type[Provider]) -> type[Provider]:
    _registry[cls.type] = cls
    return cls


def _discover() -> None:
    for info in pkgutil.iter_modules(__path__):
        if info.name == "base":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        cls = getattr(module, "PROVIDER", None)
        if cls is not None:
            _registry.setdefault(cls.type, cls)


def types() -> list[str]:
    if not _registry:
        _discover()
    return sorted(_registry)


def get(type_name: str) -> type[Provider]:
    if not _registry:
        _discover()
    try:
        return _registry[type_name]
    except KeyError:
        raise ConfigurationError(
            f"unknown DNS provider type {type_name!r}; supported: {', '.join(types())}"
        ) from None


__all__ = ["Provider", "get", "register", "types"]
