"""DNS providers, one module each. `get(type)` returns the class for a
`dns_providers.type`; adding a provider means adding one module to this package."""

from __future__ import annotations

import importlib
import pkgutil
import threading

from ..errors import ConfigurationError
from .base import Provider

_registry: dict[str, type[Provider]] = {}
_lock = threading.Lock()
_discovered = False


def register(cls: type[Provider]) -> type[Provider]:
    _registry[cls.type] = cls
    return cls


def _discover() -> None:
    """Import every provider module once (thread-safe: worker threads ask concurrently)."""
    global _discovered
    with _lock:
        if _discovered:
            return
        _import_all()
        _discovered = True


def _import_all() -> None:
    for info in pkgutil.iter_modules(__path__):
        if info.name == "base":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        cls = getattr(module, "PROVIDER", None)
        if cls is not None:
            _registry.setdefault(cls.type, cls)


def types() -> list[str]:
    _discover()
    return sorted(_registry)


def get(type_name: str) -> type[Provider]:
    _discover()
    try:
        return _registry[type_name]
    except KeyError:
        raise ConfigurationError(f"unknown DNS provider type {type_name!r}; supported: {', '.join(types())}") from None


__all__ = ["Provider", "get", "register", "types"]
