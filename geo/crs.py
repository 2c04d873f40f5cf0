"""Coordinate systems: the metric CRS for an area, and China's GCJ-02 / BD-09 offsets.

All functions take and return longitude/latitude in degrees (numpy arrays or floats).
WGS 84 (EPSG:4326) and CGCS2000 (EPSG:4490) differ by centimetres and are treated as one
here; GCJ-02 (AMap, Tencent, WeChat "gcj02") and BD-09 (Baidu) are obfuscated systems that
no EPSG code describes, so they are converted with the published formulas.
"""

from __future__ import annotations

import functools

import numpy as np
import pyproj
import shapely

# Krasovsky 1940 ellipsoid, as used by the GCJ-02 algorithm.
_A = 6378245.0
_EE = 0.00669342162296594323
_X_PI = np.pi * 3000.0 / 180.0

# Rough mainland-China box inside which GCJ-02 offsets are applied (the published test).
_CHINA = (72.004, 0.8293, 137.8347, 55.8271)

# EPSG:4534 is "CGCS2000 / 3-degree Gauss-Kruger CM 75E"; each next code is 3° further east,
# up to EPSG:4554 at CM 135E. Their false easting is 500 km with no zone prefix.
_GK_FIRST_CODE, _GK_FIRST_CM, _GK_LAST_CM = 4534, 75, 135

#: The coordinate systems an input may declare by name.
NAMED_CRS = ("wgs84", "cgcs2000", "gcj02", "bd09")


def in_china(lon, lat):
    """True where (lon, lat) lies in the box where GCJ-02 offsets apply."""
    lon, lat = np.asarray(lon, float), np.asarray(lat, float)
    w, s, e, n = _CHINA
    return (lon > w) & (lon < e) & (lat > s) & (lat < n)


def metric_crs(lon: float, lat: float) -> str:
    """The metric CRS to measure in around (lon, lat) in degrees, as "EPSG:nnnn".

    Inside China: the CGCS2000 3° Gauss–Krüger zone whose central meridian is
    3·round(lon/3) (EPSG:4534–4554). Elsewhere: the WGS 84 UTM zone (EPSG:326xx/327xx).
    """
    if not (-180 <= lon <= 180 and -90 <= lat <= 90):
        raise ValueError(f"({lon}, {lat}) is not a longitude/latitude in degrees")
    cm = 3 * round(lon / 3)
    if bool(in_china(lon, lat)) and _GK_FIRST_CM <= cm <= _GK_LAST_CM:
        return f"EPSG:{_GK_FIRST_CODE + (cm - _GK_FIRST_CM) // 3}"
    zone = min(60, int((lon + 180) // 6) + 1)
    return f"EPSG:{(32600 if lat >= 0 else 32700) + zone}"


def _offset(lon, lat):
    """GCJ-02 minus WGS 84 at a WGS 84 point, in degrees (dlon, dlat)."""
    x, y = lon - 105.0, lat - 35.0
    dlat = (-100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * np.sqrt(np.abs(x))
            + (20.0 * np.sin(6.0 * x * np.pi) + 20.0 * np.sin(2.0 * x * np.pi)) * 2.0 / 3.0
            + (20.0 * np.sin(y * np.pi) + 40.0 * np.sin(y / 3.0 * np.pi)) * 2.0 / 3.0
            + (160.0 * np.sin(y / 12.0 * np.pi) + 320.0 * np.sin(y * np.pi / 30.0)) * 2.0 / 3.0)
    dlon = (300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * np.sqrt(np.abs(x))
            + (20.0 * np.sin(6.0 * x * np.pi) + 20.0 * np.sin(2.0 * x * np.pi)) * 2.0 / 3.0
            + (20.0 * np.sin(x * np.pi) + 40.0 * np.sin(x / 3.0 * np.pi)) * 2.0 / 3.0
            + (150.0 * np.sin(x / 12.0 * np.pi) + 300.0 * np.sin(x / 30.0 * np.pi)) * 2.0 / 3.0)
    rad = lat / 180.0 * np.pi
    magic = 1 - _EE * np.sin(rad) ** 2
    sqrt_magic = np.sqrt(magic)
    dlat = dlat * 180.0 / ((_A * (1 - _EE)) / (magic * sqrt_magic) * np.pi)
    dlon = dlon * 180.0 / (_A / sqrt_magic * np.cos(rad) * np.pi)
    return dlon, dlat


def _arrays(lon, lat):
    return np.asarray(lon, dtype=float), np.asarray(lat, dtype=float)


def wgs84_to_gcj02(lon, lat):
    """WGS 84 → GCJ-02 (degrees). Points outside China are returned unchanged."""
    lon, lat = _arrays(lon, lat)
    dlon, dlat = _offset(lon, lat)
    inside = in_china(lon, lat)
    return np.where(inside, lon + dlon, lon), np.where(inside, lat + dlat, lat)


def gcj02_to_wgs84(lon, lat, tol_deg: float = 1e-10, max_iter: int = 30):
    """GCJ-02 → WGS 84 (degrees), by fixed-point iteration on the forward formula.

    The one-step inverse found in many snippets is off by up to ~2 m; iterating until the
    forward transform reproduces the input to `tol_deg` (~1e-5 m) gives centimetre accuracy.
    """
    glon, glat = _arrays(lon, lat)
    wlon, wlat = glon.copy(), glat.copy()
    for _ in range(max_iter):
        flon, flat = wgs84_to_gcj02(wlon, wlat)
        elon, elat = flon - glon, flat - glat
        wlon, wlat = wlon - elon, wlat - elat
        if np.all(np.abs(elon) < tol_deg) and np.all(np.abs(elat) < tol_deg):
            break
    inside = in_china(glon, glat)
    return np.where(inside, wlon, glon), np.where(inside, wlat, glat)


def gcj02_to_bd09(lon, lat):
    """GCJ-02 → BD-09 (degrees)."""
    lon, lat = _arrays(lon, lat)
    z = np.sqrt(lon * lon + lat * lat) + 0.00002 * np.sin(lat * _X_PI)
    theta = np.arctan2(lat, lon) + 0.000003 * np.cos(lon * _X_PI)
    return z * np.cos(theta) + 0.0065, z * np.sin(theta) + 0.006


def bd09_to_gcj02(lon, lat, tol_deg: float = 1e-10, max_iter: int = 30):
    """BD-09 → GCJ-02 (degrees): Baidu's published inverse, refined by iteration so that
    `gcj02_to_bd09` of the result gives back the input."""
    blon, blat = _arrays(lon, lat)
    x, y = blon - 0.0065, blat - 0.006
    z = np.sqrt(x * x + y * y) - 0.00002 * np.sin(y * _X_PI)
    theta = np.arctan2(y, x) - 0.000003 * np.cos(x * _X_PI)
    glon, glat = z * np.cos(theta), z * np.sin(theta)
    for _ in range(max_iter):
        flon, flat = gcj02_to_bd09(glon, glat)
        elon, elat = flon - blon, flat - blat
        glon, glat = glon - elon, glat - elat
        if np.all(np.abs(elon) < tol_deg) and np.all(np.abs(elat) < tol_deg):
            break
    return glon, glat


def wgs84_to_bd09(lon, lat):
    """WGS 84 → BD-09 (degrees)."""
    return gcj02_to_bd09(*wgs84_to_gcj02(lon, lat))


def bd09_to_wgs84(lon, lat):
    """BD-09 → WGS 84 (degrees)."""
    return gcj02_to_wgs84(*bd09_to_gcj02(lon, lat))


def to_wgs84(lon, lat, system: str):
    """Convert lon/lat in a named system ("wgs84", "cgcs2000", "gcj02", "bd09") to WGS 84."""
    system = system.lower()
    if system in ("wgs84", "cgcs2000"):
        return _arrays(lon, lat)
    if system == "gcj02":
        return gcj02_to_wgs84(lon, lat)
    if system == "bd09":
        return bd09_to_wgs84(lon, lat)
    raise ValueError(f"unknown coordinate system {system!r}; use one of {', '.join(NAMED_CRS)}")


@functools.lru_cache(maxsize=32)
def transformer(src: str, dst: str) -> pyproj.Transformer:
    """A transformer from `src` to `dst` (x = longitude/easting first), made once per process:
    making one reads PROJ's database, ~0.1–0.5 s, which a tiled run would pay for every tile
    and every layer."""
    return pyproj.Transformer.from_crs(src, dst, always_xy=True)


def reproject(geoms, src, dst) -> np.ndarray:
    """`geoms` from CRS `src` to `dst` (what GeoSeries.to_crs computes, with a cached
    transformer)."""
    t = transformer(str(src), str(dst))
    return shapely.transform(np.asarray(geoms, dtype=object),
                             lambda xy: np.column_stack(t.transform(xy[:, 0], xy[:, 1])))
