"""Dataset adapters, one module each, registered on import. Use :func:`get_adapter`."""

from __future__ import annotations

import importlib
import pkgutil

from schemas.errors import UnknownDatasetError
from tasks.datasets.base import DatasetAdapter, registered

_DISCOVERED = False


def discover() -> None:
    """Import every adapter module of this package once (modules starting with ``_`` are skipped)."""
    global _DISCOVERED
    if _DISCOVERED:
        return
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_") and info.name != "base":
            importlib.import_module(f"{__name__}.{info.name}")
    _DISCOVERED = True


def get_adapter(name: str) -> DatasetAdapter:
    """Instantiate the adapter registered as ``name``.

    Raises:
        UnknownDatasetError: Listing the registered names.
    """
    adapters = registered()
    if name not in adapters:
        raise UnknownDatasetError(f"no dataset adapter named {name!r}", hint=f"known: {', '.join(sorted(adapters))}")
    return adapters[name]()


__all__ = ["DatasetAdapter", "discover", "get_adapter", "registered"]
