"""Read a GIS or table file into a GeoDataFrame, with its CRS and a label for every row.

Formats: GeoPackage, Shapefile (.cpg honoured; `encoding` for the many without one),
GeoJSON, KML, DXF through pyogrio/GDAL; CSV and XLSX with coordinate columns through pandas.
Nothing is validated row by row here (that is layers.importer); this module only makes sure
the file can be read at all, and says clearly why not.

GIS files are read in bulk with pyogrio. A damaged record either makes that bulk read fail
(then the file is read again record by record with fiona, which keeps the good records) or
comes back from it as a null geometry (then fiona reads just those records again): either way
the records GDAL could not read carry GDAL's own words in `Source.damaged`.
"""

from __future__ import annotations

import codecs
import logging
import re
import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import shapely
from pyogrio.errors import DataLayerError, DataSourceError

from .errors import InputError

GIS_SUFFIXES = {".gpkg": "GeoPackage", ".shp": "Shapefile", ".geojson": "GeoJSON",
                ".json": "GeoJSON", ".kml": "KML", ".dxf": "DXF"}
TABLE_SUFFIXES = {".csv": "CSV", ".txt": "CSV", ".xlsx": "XLSX"}

# Coordinate column names we recognise, as (x names, y names), most specific first.
_XY_NAMES = [
    (("lon", "lng", "long", "longitude", "经度"), ("lat", "latitude", "纬度")),
    (("x", "x坐标", "横坐标", "easting"), ("y", "y坐标", "纵坐标", "northing")),
]
_CPG_ALIASES = {"936": "gbk", "cp936": "gbk", "gb2312": "gbk", "gb18030": "gb18030",
                "utf8": "utf-8", "65001": "utf-8", "ansi 936": "gbk"}


@dataclass
class Source:
    """What was read: the frame (geometry may be all None for table files without
    coordinates), the CRS the file declares (None if it declares none), and how rows are
    numbered for messages."""

    path: Path
    format: str
    frame: gpd.GeoDataFrame
    crs: object | None
    row_numbers: np.ndarray  # the number a user sees for each row (spreadsheet row, or feature 1…)
    row_word: str = "row"
    xy_columns: tuple[str, str] | None = None
    warnings: list[str] = field(default_factory=list)
    # records GDAL could not read: the user's row number → GDAL's reason (their geometry is None)
    damaged: dict[int, str] = field(default_factory=dict)
    reader: str = "pandas"  # pyogrio (bulk), pyogrio+fiona (some records again), fiona, pandas


def _normalise_encoding(name: str) -> str:
    key = name.strip().lower()
    key = _CPG_ALIASES.get(key, key)
    try:
        return codecs.lookup(key).name
    except LookupError:
        raise InputError(f"unknown encoding {name!r}; use e.g. utf-8, gbk or gb18030") from None


def _looks_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
        return any(b >= 0x80 for b in raw)
    except UnicodeDecodeError:
        return False


def _decoder(path: Path, encoding: str, how: str):
    """A function turning raw bytes into text, failing with a message naming field and row."""

    def decode(raw: bytes, where: str, cut_tail: bool = False) -> str:
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError as exc:
            if cut_tail and exc.reason == "unexpected end of data":
                # DBF field names are at most 10 bytes: a long UTF-8 name is cut mid-character
                return decode(raw[:exc.start], where)
            hint = ""
            if encoding != "utf-8" and _looks_utf8(raw):
                hint = "; the text is valid UTF-8: try --encoding utf-8"
            elif encoding == "utf-8":
                try:
                    raw.decode("gbk")
                    hint = "; it looks like GBK: try --encoding gbk"
                except UnicodeDecodeError:
                    pass
            raise InputError(f"{path.name}: {where} cannot be decoded as {encoding} ({how}): "
                             f"byte {raw[exc.start:exc.start + 1]!r} at {exc.start}{hint}") from None
        if encoding not in ("utf-8",) and _looks_utf8(raw) and re.search(r"[\u4e00-\u9fff]", raw.decode("utf-8")):
            raise InputError(f"{path.name}: {where} is UTF-8 text but was read as {encoding} ({how}),"
                             " which garbles it; use --encoding utf-8 (or drop --encoding)")
        return text

    return decode


def _shapefile_encoding(path: Path, encoding: str | None, sample: list[bytes]) -> tuple[str, str]:
    """The encoding to decode a shapefile's DBF with, and how it was chosen."""
    if encoding:
        return _normalise_encoding(encoding), "--encoding"
    cpg = path.with_suffix(".cpg")
    if not cpg.exists():
        cpg = path.with_suffix(".CPG")
    if cpg.exists():
        return _normalise_encoding(cpg.read_text("ascii", "replace")), f"{cpg.name}"
    if any(_looks_utf8(s) for s in sample) and all(_is_utf8(s) for s in sample):
        return "utf-8", "no .cpg; the text is valid UTF-8"
    if all(not any(b >= 0x80 for b in s) for s in sample):
        return "ascii", "no .cpg; plain ASCII"
    raise InputError(f"{path.name} has no .cpg file saying how its text is encoded, and the text "
                     "is not UTF-8; Chinese shapefiles without .cpg are usually GBK: "
                     "pass --encoding gbk (or add a .cpg file containing GBK)")


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def _check_file(path: Path) -> None:
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path} is a folder; give the file inside it")
    if path.stat().st_size == 0:
        raise InputError(f"{path.name} is empty (0 bytes): nothing to import; "
                         "export it again from its source")


def read_file(path: str | Path, *, layer: str | None = None, encoding: str | None = None,
              x: str | None = None, y: str | None = None) -> Source:
    """Read any supported file. `layer` picks a layer of a multi-layer file (GeoPackage, DXF);
    `encoding` decodes text (Shapefile, CSV); `x`/`y` name the coordinate columns of a table."""
    path = Path(path)
    _check_file(path)
    suffix = path.suffix.lower()
    if suffix in TABLE_SUFFIXES:
        return _read_table(path, TABLE_SUFFIXES[suffix], encoding, x, y)
    if suffix in GIS_SUFFIXES:
        return _read_gis(path, GIS_SUFFIXES[suffix], layer, encoding)
    known = ", ".join(sorted({*GIS_SUFFIXES, *TABLE_SUFFIXES}))
    raise InputError(f"{path.name}: unknown file type {suffix!r}; zonemap reads {known} "
                     "(and OSM extracts with import-osm)")


def _pick_layer(path: Path, layer: str | None) -> str | None:
    try:
        names = [str(n) for n, _ in pyogrio.list_layers(path)]
    except (DataSourceError, DataLayerError) as exc:
        raise InputError(f"{path.name} cannot be opened: {exc}") from None
    if layer is not None:
        if layer not in names:
            raise InputError(f"{path.name} has no layer {layer!r}; its layers are: {', '.join(names)}")
        return layer
    if len(names) > 1 and path.suffix.lower() == ".gpkg":
        raise InputError(f"{path.name} has {len(names)} layers ({', '.join(names)}); "
                         "pick one with --layer")
    return names[0] if names else None


def _read_gis(path: Path, fmt: str, layer: str | None, encoding: str | None) -> Source:
    if fmt == "Shapefile":
        for part in (".shx", ".dbf"):
            if not (path.with_suffix(part).exists() or path.with_suffix(part.upper()).exists()):
                raise InputError(f"{path.name}: the shapefile's {part} file is missing; "
                                 f"copy {path.stem}{part} next to it")
        _check_shapefile_complete(path)
    layer = _pick_layer(path, layer)
    # a shapefile's text is read as latin-1 (raw bytes) and decoded below with the right codec
    raw_encoding = "latin1" if fmt == "Shapefile" else None
    warn = []
    try:
        frame = _bulk_read(path, layer, raw_encoding)
    except (DataSourceError, DataLayerError, RuntimeError, ValueError) as exc:
        frame, damaged = _salvage_read(path, fmt, layer, raw_encoding, exc)
        reader = "fiona"
        warn.append(f"the file could not be read in one go ({exc}); it was read record by record "
                    f"and {len(damaged)} damaged records were set aside")
    else:
        damaged = _explain_null_geometries(path, layer, raw_encoding, frame)
        reader = "pyogrio+fiona" if damaged is not None else "pyogrio"
        damaged = damaged or {}
        frame = frame.reset_index(drop=True)
    if not isinstance(frame, gpd.GeoDataFrame):
        frame = gpd.GeoDataFrame(frame, geometry=gpd.GeoSeries([None] * len(frame)))
    if fmt == "Shapefile":
        frame, how = _decode_frame(path, frame, encoding)
        warn.append(f"text read as {how}")
    rows = np.arange(1, len(frame) + 1)
    counted = "; GDAL numbers shapes from 0" if fmt == "Shapefile" else ""
    notes = {int(rows[i]): f"damaged record (features counted from 1{counted}): {why}"
             for i, why in damaged.items()}
    return Source(path, fmt, frame, frame.crs, rows, "feature", None, warn, notes, reader)


def _bulk_read(path: Path, layer: str | None, raw_encoding: str | None) -> gpd.GeoDataFrame:
    """The whole layer in one pyogrio call, indexed by GDAL's feature ids (FIDs)."""
    kwargs = {"encoding": raw_encoding} if raw_encoding else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pyogrio.read_dataframe(path, layer=layer, on_invalid="ignore", fid_as_index=True, **kwargs)


# ---- fiona: record by record, for damaged files -------------------------------------------

_EXPLAIN_AT_MOST = 1000  # null geometries looked at again one by one (KML/DXF seek slowly)


class _GdalMessages(logging.Handler):
    """GDAL's errors and warnings, which fiona hands to the `fiona` logger, raised by this
    thread (a server may read other files at the same time)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.thread = threading.get_ident()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            self.messages.append(record.getMessage().strip())

    def take(self) -> list[str]:
        out, self.messages = self.messages, []
        return out


@contextmanager
def _fiona_open(path: Path, layer: str | None, raw_encoding: str | None):
    """The file opened with fiona, and the GDAL messages said while it is read."""
    import fiona

    messages = _GdalMessages()
    log = logging.getLogger("fiona")
    log.addHandler(messages)
    try:
        kwargs = {"encoding": raw_encoding} if raw_encoding else {}
        with fiona.open(path, layer=layer, **kwargs) as src:
            yield src, messages
    finally:
        log.removeHandler(messages)


def _record(feature, messages: _GdalMessages) -> tuple[dict, object, str | None]:
    """(properties, shapely geometry or None, why the record is damaged or None)."""
    problems = messages.take()
    geometry = None
    if feature.geometry is not None:
        try:
            geometry = shapely.geometry.shape(feature.geometry)
        except (ValueError, TypeError, AttributeError, shapely.errors.ShapelyError) as exc:
            problems.append(f"its {feature.geometry.type} geometry is malformed: {exc}")
    return dict(feature.properties), (None if problems else geometry), "; ".join(problems) or None


def _salvage_read(path: Path, fmt: str, layer: str | None, raw_encoding: str | None,
                  bulk_error: Exception) -> tuple[gpd.GeoDataFrame, dict[int, str]]:
    """Every record fiona can read, in file order, and {position: GDAL's reason} for the rest
    (those rows are kept, empty, so that the user's feature numbers stay right)."""
    from fiona.errors import FionaError

    cannot = InputError(f"{path.name} cannot be read as {fmt}: {bulk_error}; "
                        "is the file complete (not truncated)?")
    try:
        with _fiona_open(path, layer, raw_encoding) as (src, messages):
            columns = list(src.schema["properties"])
            crs = src.crs.to_wkt() if src.crs else None
            expected = len(src)
            props, geoms, damaged = _read_records(src, messages, expected)
    except (FionaError, OSError, RuntimeError, ValueError):
        raise cannot from None
    if not props:
        raise cannot
    frame = gpd.GeoDataFrame(pd.DataFrame(props, columns=columns),
                             geometry=gpd.GeoSeries(geoms, crs=crs), crs=crs)
    return frame, damaged


def _read_records(src, messages: _GdalMessages, expected: int):
    props, geoms, damaged = [], [], {}

    def keep(p, g, why):
        if why:
            damaged[len(props)] = why
        props.append(p)
        geoms.append(g)

    records = iter(src)
    while expected < 0 or len(props) < expected:
        try:
            feature = next(records)
        except StopIteration:
            break
        except Exception as exc:  # fiona raises many kinds for one bad record
            keep({}, None, "; ".join([*messages.take(), str(exc)]))
            continue
        keep(*_record(feature, messages))
    # GDAL stopped early (a truncated .dbf): the records it never reached
    tail = "; ".join(messages.take()) or "GDAL stopped reading the file before this record"
    while len(props) < expected:
        keep({}, None, tail)
    return props, geoms, damaged


def _explain_null_geometries(path: Path, layer: str | None, raw_encoding: str | None,
                             frame: gpd.GeoDataFrame) -> dict[int, str] | None:
    """{position: GDAL's reason} for records the bulk read returned without geometry because
    GDAL could not read them (it says so only to an error handler, which fiona has). Records
    that really have no geometry are not in the answer. None when fiona was not needed."""
    if not isinstance(frame, gpd.GeoDataFrame):
        return None
    null = np.flatnonzero(frame.geometry.isna().to_numpy())[:_EXPLAIN_AT_MOST]
    if not len(null):
        return None
    out = {}
    with _fiona_open(path, layer, raw_encoding) as (src, messages):
        for pos in null:
            try:
                feature = src.get(int(frame.index[pos]))
            except Exception as exc:  # fiona raises many kinds for one bad record
                out[int(pos)] = "; ".join([*messages.take(), str(exc)])
                continue
            _, geometry, why = _record(feature, messages)
            if why is None and geometry is not None:
                why = f"its {geometry.geom_type} geometry could not be decoded in bulk"
            if why:
                out[int(pos)] = why
    return out


def _check_shapefile_complete(path: Path) -> None:
    """A truncated .shp still opens in GDAL; its header says how long it should be."""
    shp = path.read_bytes()[:100]
    if len(shp) < 100 or int.from_bytes(shp[0:4], "big") != 9994:
        raise InputError(f"{path.name} is not a shapefile (bad header); export it again")
    declared = int.from_bytes(shp[24:28], "big") * 2
    actual = path.stat().st_size
    if actual < declared:
        raise InputError(f"{path.name} is truncated: its header says {declared} bytes but the "
                         f"file has {actual}; copy or export it again")


def _decode_frame(path: Path, frame: gpd.GeoDataFrame, encoding: str | None):
    """Decode a shapefile read as latin-1 (raw bytes) with the right encoding."""
    text_cols = [c for c in frame.columns if c != frame.geometry.name
                 and (frame[c].dtype == object or pd.api.types.is_string_dtype(frame[c]))]
    sample = [str(c).encode("latin1") for c in frame.columns]
    for c in text_cols:
        sample += [v.encode("latin1") for v in frame[c].dropna().head(500) if isinstance(v, str)]
    enc, how = _shapefile_encoding(path, encoding, sample)
    decode = _decoder(path, enc, how)
    names = {c: decode(str(c).encode("latin1"), f"field name {c!r}", cut_tail=True)
             if c != frame.geometry.name
             else c for c in frame.columns}
    for c in text_cols:
        col = frame[c]
        frame[c] = pd.Series([decode(v.encode("latin1"), f"feature {i + 1}, field {names[c]!r}")
                              if isinstance(v, str) else None for i, v in enumerate(col)],
                             index=frame.index, dtype=object)
    return frame.rename(columns=names), f"{enc} ({how})"


def _read_table(path: Path, fmt: str, encoding: str | None, x: str | None, y: str | None) -> Source:
    warn: list[str] = []
    if fmt == "CSV":
        raw = path.read_bytes()
        if raw.startswith(codecs.BOM_UTF8):
            raw = raw[3:]
        enc = _normalise_encoding(encoding) if encoding else "utf-8"
        text = _decoder(path, enc, "--encoding" if encoding else "default UTF-8")(raw, "the text")
        import io

        try:
            df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, na_values=[""])
        except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            raise InputError(f"{path.name} is not a readable CSV: {exc}") from None
    else:
        try:
            df = pd.read_excel(path, dtype=str, engine="openpyxl")
        except Exception as exc:  # openpyxl raises many kinds for a broken workbook
            raise InputError(f"{path.name} is not a readable .xlsx workbook: {exc}") from None
    df.columns = [str(c).strip() for c in df.columns]
    xy = xy_columns(path, df, x, y)
    rows = np.arange(2, len(df) + 2)  # as a spreadsheet shows them: the header is row 1
    if xy is None:
        frame = gpd.GeoDataFrame(df, geometry=gpd.GeoSeries([None] * len(df)))
        return Source(path, fmt, frame, None, rows, "row", None, warn)
    geoms, missing = xy_points(df, xy)
    frame = gpd.GeoDataFrame(df, geometry=gpd.GeoSeries(geoms))
    frame.attrs["bad_xy"] = [(rows[i], df[xy[0]].iloc[i], df[xy[1]].iloc[i]) for i in np.flatnonzero(missing)]
    warn.append(f"coordinates taken from columns {xy[0]!r} (x) and {xy[1]!r} (y)")
    return Source(path, fmt, frame, None, rows, "row", xy, warn)


def xy_points(df: pd.DataFrame, xy: tuple[str, str]):
    """(points, missing): a point per row from the coordinate columns `xy` (text or numbers),
    None where either is not a number; `missing` flags those rows."""
    xs, ys = (pd.to_numeric(df[c].str.strip() if not pd.api.types.is_numeric_dtype(df[c]) else df[c],
                            errors="coerce") for c in xy)
    missing = (xs.isna() | ys.isna()).to_numpy()
    geoms = gpd.points_from_xy(xs, ys)
    geoms[missing] = None
    return geoms, missing


def xy_columns(path: Path, df: pd.DataFrame, x: str | None, y: str | None):
    """The (x, y) coordinate columns of a table: `x`/`y` when given (checked), else found by
    name (lon/lat, 经度/纬度, x/y…); None when it has none."""
    if x or y:
        if not (x and y):
            raise InputError("give both --x and --y, or neither")
        for c in (x, y):
            if c not in df.columns:
                raise InputError(f"{path.name} has no column {c!r}; its columns are: "
                                 f"{', '.join(df.columns)}")
        return x, y
    lower = {c.lower(): c for c in df.columns}
    for xs, ys in _XY_NAMES:
        fx = [lower[n] for n in xs if n in lower]
        fy = [lower[n] for n in ys if n in lower]
        if fx and fy:
            return fx[0], fy[0]
        if fx or fy:
            raise InputError(f"{path.name} has a {'x' if fx else 'y'} column "
                             f"({(fx or fy)[0]!r}) but no matching "
                             f"{'y' if fx else 'x'} column; name both with --x and --y")
    return None
