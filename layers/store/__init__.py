"""One Store interface, two backends: a GeoPackage file (embedded default) and PostGIS.

`open_store(url)` picks the backend from one URL: `postgresql://…` for PostGIS, anything
else is a GeoPackage file path.
"""

from __future__ import annotations

from .base import Store, Transaction


def open_store(url: str) -> Store:
    """Open (and create, when missing) the store at `url`."""
    if url.startswith(("postgresql://", "postgres://")):
        from .postgis import PostGISStore

        return PostGISStore(url)
    from .gpkg import GeoPackageStore

    return GeoPackageStore(url)


__all__ = ["Store", "Transaction", "open_store"]
