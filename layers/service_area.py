"""Where a deployment takes reports: the extent of its zones in force plus a margin, or a
boundary file a city gives.

A Nanjing deployment should not take a report at (0, 0) or in Beijing and hand it to a Nanjing
street office: such a report is refused (OutsideServiceArea, 422) with a message that says which
area this deployment serves. With no zones and no boundary every place is served (a city that
takes reports before drawing zones routes them all to 属地兜底). File imports are not checked:
a city's report history may hold places it no longer serves."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import shapely

from .errors import InputError, OutsideServiceArea
from .store import Store
from .zones import current

MARGIN_M = 2000.0
_M_PER_DEG = 111_320.0  # metres per degree of latitude (and of longitude at the equator)


@dataclass(frozen=True)
class ServiceArea:
    """`shape`: a (multi)polygon in WGS 84, or None for "everywhere"; `label` names it."""

    shape: shapely.Geometry | None
    label: str

    @classmethod
    def from_store(cls, store: Store, *, margin_m: float = MARGIN_M,
                   boundary: str | Path | None = None) -> ServiceArea:
        """The boundary file's polygons when given, else the box of the zones in force widened
        by `margin_m` on every side; everywhere when there is neither."""
        if boundary is not None:
            return cls.from_boundary(boundary)
        zones = current(store.read("zones"))
        if zones.empty:
            return cls(None, "everywhere (no zones yet)")
        return cls.around(tuple(zones.total_bounds), margin_m)

    @classmethod
    def around(cls, bounds: tuple[float, float, float, float], margin_m: float = MARGIN_M) -> ServiceArea:
        if not (math.isfinite(margin_m) and margin_m >= 0):
            raise InputError(f"service area margin {margin_m!r}: give metres, 0 or more")
        w, s, e, n = bounds
        dy = margin_m / _M_PER_DEG
        # widen longitude by the margin at the latitude nearest a pole, so it is never short
        dx = margin_m / (_M_PER_DEG * max(math.cos(math.radians(max(abs(s - dy), abs(n + dy)))), 0.01))
        box = (max(w - dx, -180.0), max(s - dy, -90.0), min(e + dx, 180.0), min(n + dy, 90.0))
        return cls(shapely.box(*box), f"{_span(box)} (the zones' extent plus {_distance(margin_m)})")

    @classmethod
    def from_boundary(cls, path: str | Path) -> ServiceArea:
        from .readers import read_file

        src = read_file(path)
        frame = src.frame
        if src.crs is None:
            raise InputError(f"{Path(path).name}: the boundary file has no CRS; give one in WGS 84 or with a .prj")
        frame = frame.set_crs(src.crs, allow_override=True).to_crs("EPSG:4326")
        polys = [g for g in frame.geometry if g is not None and g.geom_type in ("Polygon", "MultiPolygon")]
        if not polys:
            raise InputError(f"{Path(path).name}: the boundary file holds no polygon")
        shape = shapely.union_all(shapely.make_valid(polys))
        return cls(shape, f"the area of {Path(path).name} ({_span(shape.bounds)})")

    def check(self, lon: float, lat: float) -> None:
        """Raise OutsideServiceArea unless (lon, lat), WGS 84, is inside the area (its edge counts)."""
        if self.shape is None or shapely.covers(self.shape, shapely.Point(lon, lat)):
            return
        raise OutsideServiceArea(f"zonemap here serves {self.label}; ({_short(lon)}, {_short(lat)}) is outside it, "
                                 "so this deployment does not take reports from that place")


def _span(b) -> str:
    w, s, e, n = b
    return f"{_axis(w, e, 'E', 'W')}, {_axis(s, n, 'N', 'S')}"


def _axis(lo: float, hi: float, pos: str, neg: str) -> str:
    if lo >= 0 or hi < 0:  # one hemisphere: "118.76–118.80 E"
        return f"{abs(lo):.2f}–{abs(hi):.2f} {pos if lo >= 0 else neg}"
    return f"{abs(lo):.2f} {neg}–{hi:.2f} {pos}"


def _short(v: float) -> str:
    return f"{v:.5f}".rstrip("0").rstrip(".")


def _distance(m: float) -> str:
    return f"{m / 1000:g} km" if m >= 1000 else f"{m:g} m"


__all__ = ["MARGIN_M", "ServiceArea"]
