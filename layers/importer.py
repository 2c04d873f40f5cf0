"""The one import core (command line now, web upload later): read → validate → one
transaction → report.

Strict by default: if any row is unusable nothing is written and the report says which rows
and why; `skip_invalid=True` writes the good rows and reports the rest. `dry_run=True`
validates and reports without writing.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely

from geo.crs import NAMED_CRS, to_wgs84

from .errors import InputError
from .readers import Source, read_file
from .schema import STORAGE_CRS, Layer, get_layer
from .store import Store

_DIMENSION = {"Point": 0, "MultiLineString": 1, "MultiPolygon": 2}
_MAX_LISTED = 20


@dataclass
class Report:
    file: str
    layer: str
    crs: str | None = None
    rows: int = 0
    accepted: int = 0
    repaired: int = 0
    rejected: list[dict] = field(default_factory=list)  # {"row": n, "reason": "..."}
    columns: dict[str, str] = field(default_factory=dict)  # source column -> layer column
    kept_in_attrs: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    dry_run: bool = False
    written: int = 0
    error: str | None = None
    flagged: int = 0  # problems: rows whose location is a placeholder
    routed: dict[str, int] = field(default_factory=dict)  # problems: how many by each method
    linked: int = 0  # problems: duplicates linked to an open case
    reader: str | None = None  # pyogrio, pyogrio+fiona (damaged records read again), fiona, pandas
    zones: dict = field(default_factory=dict)  # zones: new_zones, new_versions, unchanged, valid_from

    def to_dict(self) -> dict:
        return asdict(self)

    def text(self) -> str:
        verb = "would import" if self.dry_run else ("imported" if self.written else "did not import")
        lines = [f"{self.file} → {self.layer}: {verb} {self.written if self.written else self.accepted}"
                 f" of {self.rows} rows ({self.repaired} repaired, {len(self.rejected)} rejected)"
                 f"; CRS {self.crs}"]
        lines += [f"  warning: {w}" for w in self.warnings]
        if self.zones:
            z = self.zones
            lines.append(f"  zones in force from {z['valid_from']}: {z['new_zones']} new, "
                         f"{z['new_versions']} new versions (the old ones closed), {z['unchanged']} unchanged")
        if self.routed:
            lines.append("  routed: " + ", ".join(f"{k} {v}" for k, v in self.routed.items())
                         + (f"; {self.linked} duplicates linked to open cases" if self.linked else ""))
        for r in self.rejected[:_MAX_LISTED]:
            lines.append(f"  rejected {r['row']}: {r['reason']}")
        if len(self.rejected) > _MAX_LISTED:
            lines.append(f"  … and {len(self.rejected) - _MAX_LISTED} more (see --json)")
        if self.error:
            lines.append(f"error: {self.error}")
        return "\n".join(lines)


# ---- CRS ------------------------------------------------------------------------------

def parse_crs(text: str) -> tuple[pyproj.CRS, str | None]:
    """A --crs value → (the CRS coordinates are in, the named offset system or None).

    Accepts an EPSG code (4549, EPSG:4549), wgs84, cgcs2000, gcj02, bd09, or any string
    pyproj understands. GCJ-02 and BD-09 are longitude/latitude with an offset: the CRS
    returned for them is WGS 84 and the name says which offset to remove."""
    key = text.strip().lower()
    if key in NAMED_CRS:
        return pyproj.CRS("EPSG:4490" if key == "cgcs2000" else "EPSG:4326"), key
    try:
        return pyproj.CRS.from_user_input(int(key) if key.isdigit() else text), None
    except pyproj.exceptions.CRSError:
        raise InputError(f"--crs {text!r} is not a coordinate system zonemap knows; use an EPSG "
                         f"code (e.g. 4326, 4549) or one of {', '.join(NAMED_CRS)}") from None


def _crs_label(crs: pyproj.CRS, named: str | None) -> str:
    if named:
        return named
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else crs.to_string()


def resolve_crs(source: Source, crs_option: str | None) -> tuple[pyproj.CRS, str | None]:
    file_crs = pyproj.CRS.from_user_input(source.crs) if source.crs is not None else None
    if crs_option is None:
        if file_crs is None:
            why = "no .prj file" if source.format == "Shapefile" else "no coordinate system"
            raise InputError(f"{source.path.name} has {why}; say which it uses with --crs "
                             f"(an EPSG code such as 4326 or 4549, or {', '.join(NAMED_CRS)})")
        return file_crs, None
    crs, named = parse_crs(crs_option)
    if file_crs is not None and not file_crs.equals(crs):
        if named and file_crs.is_geographic:
            return file_crs, named  # a lon/lat file whose numbers carry a GCJ-02/BD-09 offset
        raise InputError(f"{source.path.name} declares {_crs_label(file_crs, None)} but --crs says "
                         f"{crs_option}; drop --crs to use the file's own, or fix the file")
    return crs, named


# ---- rows -----------------------------------------------------------------------------

def _column_map(layer: Layer, columns: list[str], explicit: dict[str, str]) -> dict[str, str]:
    """source column → layer column, by explicit --map, exact name, case-blind name, alias."""
    out: dict[str, str] = {}
    for src, dst in explicit.items():
        if src not in columns:
            raise InputError(f"--map {src}={dst}: the file has no column {src!r}; its columns "
                             f"are: {', '.join(columns)}")
        if dst not in layer.column_names:
            raise InputError(f"--map {src}={dst}: layer {layer.name!r} has no column {dst!r}; "
                             f"its columns are: {', '.join(layer.column_names)}")
        out[src] = dst
    taken = set(out.values())
    for col in layer.columns:
        if col.name in taken or col.name in ("source", "attrs"):
            continue
        names = [col.name, *col.aliases]
        hit = next((c for n in names for c in columns if c not in out and c == n), None)
        hit = hit or next((c for n in names for c in columns
                           if c not in out and c.lower() == n.lower()), None)
        if hit is not None:
            out[hit] = col.name
            taken.add(col.name)
    return out


def _plain(v):
    if isinstance(v, (np.generic,)):
        v = v.item()
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, (pd.Timestamp,)):
        return v.isoformat()
    if v is pd.NA or v is pd.NaT:
        return None
    return v if isinstance(v, (str, int, float, bool)) or v is None else str(v)


def _convert(value, type_: str):
    """Value for a typed column; raises ValueError with a short reason."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    if isinstance(value, str):
        value = value.strip()
        if value == "":
            return None
    if type_ in ("real", "integer"):
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{value!r} is not a number") from None
        if type_ == "integer":
            if not number.is_integer():
                raise ValueError(f"{value!r} is not a whole number")
            return int(number)
        return number
    if type_ in ("date", "datetime"):
        try:
            ts = pd.Timestamp(value)
        except (TypeError, ValueError):
            raise ValueError(f"{value!r} is not a date (use YYYY-MM-DD)") from None
        if ts is pd.NaT:
            return None
        return ts.date() if type_ == "date" else ts
    if type_ == "boolean":
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "y", "是", "t"):
            return True
        if text in ("0", "false", "no", "n", "否", "f"):
            return False
        raise ValueError(f"{value!r} is not yes/no")
    return _plain(value) if not isinstance(value, str) else value


def _geometry_problem(g, geographic: bool) -> str | None:
    """Why a source geometry cannot be used, before reprojection, or None."""
    if g is None or shapely.is_empty(g):
        return "empty geometry"
    x0, y0, x1, y1 = shapely.bounds(g)
    if not all(map(math.isfinite, (x0, y0, x1, y1))):
        return "coordinates are not finite numbers"
    if geographic:
        if x0 >= -180 and x1 <= 180 and y0 >= -90 and y1 <= 90:
            return None
        if x0 >= -90 and x1 <= 90 and y0 >= -180 and y1 <= 180:
            return (f"latitude {y1 if abs(y1) > 90 else y0:g} is outside −90…90 but would be a "
                    "valid longitude: did you swap lat/lon? (name the columns with --x/--y)")
        return (f"coordinates ({x0:g}, {y0:g}) are outside longitude −180…180 / latitude −90…90; "
                "the data is probably in a projected CRS: pass it with --crs (e.g. --crs 4549)")
    return None


def _fit_type(g, geometry_type: str):
    """(geometry of the layer's type, was_repaired); _Rejected when none can be had."""
    repaired = False
    if not shapely.is_valid(g):
        g = shapely.make_valid(g)
        repaired = True
    want = _DIMENSION[geometry_type]
    if shapely.get_dimensions(g) != want or g.geom_type == "GeometryCollection":
        parts = [p for p in shapely.get_parts(g) if shapely.get_dimensions(p) == want and not p.is_empty]
        if not parts:
            what = "repairing it left no " if repaired else "it is a " + g.geom_type + ", not a "
            raise _Rejected(f"{what}{geometry_type.replace('Multi', '').lower()} geometry")
        g = shapely.union_all(parts) if len(parts) > 1 else parts[0]
        repaired = True
    if geometry_type == "Point" and g.geom_type == "MultiPoint":
        if len(g.geoms) != 1:
            raise _Rejected("a multipoint with several points; one point per row is needed")
        g = g.geoms[0]
    return g, repaired


def _unit_id(row: dict) -> str:
    if row.get("credit_code"):
        return str(row["credit_code"])
    key = f"{row.get('name') or ''}|{row.get('address') or ''}"
    return "U" + hashlib.sha1(key.encode("utf-8")).hexdigest()[:10]


class _Rejected(Exception):
    """A row that cannot be imported; the message says why."""


def _check_row(layer: Layer, mapping: dict[str, str], rec: dict, g, geographic: bool, bad_xy,
               required: set[str] | None = None):
    """(typed row, geometry of the layer's type, repaired?) for one source row, or _Rejected."""
    if bad_xy is not None:
        xv, yv = bad_xy
        raise _Rejected(f"coordinates {xv!r}, {yv!r} are not numbers" if (xv or yv)
                        else "empty geometry (no coordinates)")
    row = {}
    for src, dst in mapping.items():
        try:
            row[dst] = _convert(rec[src], layer.column(dst).type)
        except ValueError as exc:
            raise _Rejected(f"field {src!r}: {exc}") from None
    if required is None:
        if layer.name == "units" and not row.get("unit_id"):
            row["unit_id"] = _unit_id(row)
        required = {c.name for c in layer.columns if c.required}
    missing = [c for c in layer.column_names if c in required and row.get(c) in (None, "")]
    if missing:
        hint = "" if missing[0] in mapping.values() else \
            f" (no column maps to it; use --map SOURCE={missing[0]})"
        raise _Rejected(f"required field {missing[0]!r} is empty{hint}")
    if g is None and not layer.geometry_required:
        return row, None, False
    problem = _geometry_problem(g, geographic)
    if problem:
        raise _Rejected(problem)
    fitted, repaired = _fit_type(g, layer.geometry_type)
    return row, fitted, repaired


def prepare(source: Source, layer: Layer, crs_option: str | None,
            column_map: dict[str, str] | None = None,
            required: set[str] | None = None) -> tuple[gpd.GeoDataFrame, Report]:
    """Validate `source` for `layer`: the frame to write (EPSG:4326) and the report.
    `required` replaces the layer's required columns (an update needs only its key)."""
    report = Report(file=source.path.name, layer=layer.name, rows=len(source.frame),
                    warnings=list(source.warnings), reader=source.reader)
    frame = source.frame
    # an empty geometry counts as one (a row error later), a missing one does not
    has_geometry = bool((~frame.geometry.values.isna()).any()) or source.xy_columns is not None
    if layer.geometry_required and not has_geometry:
        raise InputError(f"{source.path.name} has no geometry and no coordinate columns; layer "
                         f"{layer.name!r} needs them (name them with --x and --y)")
    crs, named = (resolve_crs(source, crs_option) if has_geometry else (None, None))
    report.crs = _crs_label(crs, named) if crs is not None else None
    columns = [c for c in frame.columns if c != frame.geometry.name]
    mapping = _column_map(layer, columns, column_map or {})
    report.columns = mapping
    skip = set(source.xy_columns or ())
    report.kept_in_attrs = [c for c in columns if c not in mapping and c not in skip]

    good_rows, good_geoms, raw = [], [], []
    geographic = bool(crs is not None and crs.is_geographic)
    bad_xy = {int(r): (xv, yv) for r, xv, yv in frame.attrs.get("bad_xy", [])}
    for label, rec, g in zip(source.row_numbers, frame[columns].to_dict("records"),
                             frame.geometry.values):
        try:
            if int(label) in source.damaged:  # GDAL could not read the record
                raise _Rejected(source.damaged[int(label)])
            row, g, repaired = _check_row(layer, mapping, rec, g, geographic, bad_xy.get(int(label)),
                                          required)
        except _Rejected as why:
            report.rejected.append({"row": int(label), "reason": f"{source.row_word} {label}: {why}"})
            continue
        report.repaired += repaired
        extras = {c: _plain(rec[c]) for c in report.kept_in_attrs if _plain(rec[c]) is not None}
        row["attrs"] = json.dumps(extras, ensure_ascii=False) if extras else None
        row["source"] = f"{source.path.name}#{label}"
        good_rows.append(row)
        good_geoms.append(g)
        if g is not None and g.geom_type == "Point":
            raw.append((g.x, g.y))
        else:
            raw.append((None, None))

    out = gpd.GeoDataFrame(pd.DataFrame(good_rows, columns=[*dict.fromkeys(
        [c for r in good_rows for c in r])]), geometry=gpd.GeoSeries(good_geoms, crs=crs))
    if crs is not None and len(out):
        if "raw_x" in layer.column_names:
            out["raw_x"] = [r[0] for r in raw]
            out["raw_y"] = [r[1] for r in raw]
            out["raw_crs"] = [report.crs if r[0] is not None else None for r in raw]
        if named in ("gcj02", "bd09"):
            out.geometry = shapely.transform(out.geometry.values,
                                             lambda xy: np.column_stack(to_wgs84(xy[:, 0], xy[:, 1], named)))
        out = out.to_crs(STORAGE_CRS)
        # a projected coordinate that is far outside its CRS's area comes back as inf
        bounds = out.geometry.bounds.to_numpy()
        bad = ~np.isfinite(bounds).all(axis=1) & out.geometry.notna().to_numpy()
        bad |= (np.abs(bounds[:, [0, 2]]) > 180).any(axis=1) | (np.abs(bounds[:, [1, 3]]) > 90).any(axis=1)
        for idx in np.flatnonzero(bad):
            report.rejected.append({"row": int(out["source"].iloc[idx].rsplit("#", 1)[1]),
                                    "reason": f"{source.row_word} {out['source'].iloc[idx].rsplit('#', 1)[1]}"
                                              f": coordinates fall outside {report.crs}'s area"})
        out = out[~bad]
    else:
        out = out.set_crs(STORAGE_CRS, allow_override=True)
    report.rejected.sort(key=lambda r: r["row"])
    report.accepted = len(out)
    return out, report


MATCH_KEYS = {"name": "name", "code": "credit_code"}
UNIT_FIELDS = ("type", "credit_code", "address", "person", "phone", "email", "gateway_id", "notify_off")


def _unit_updates(store: Store, frame: gpd.GeoDataFrame, report: Report, match: str) -> list:
    """(fid, values) for each row of a units table matched to an existing unit by name or
    统一社会信用代码; rows that match none, or several, are rejected."""
    key = MATCH_KEYS[match]
    units = store.read("units")
    index: dict[str, list[int]] = {}
    for fid, value in zip(units["fid"], units[key]):
        if value:
            index.setdefault(str(value).strip(), []).append(int(fid))
    updates = []
    for row in frame.to_dict("records"):
        label = row["source"].rsplit("#", 1)[1]
        value = row.get(key)
        hits = index.get(str(value).strip(), []) if value else []
        if len(hits) != 1:
            why = (f"no unit with {key} {value!r} in the store" if not hits
                   else f"{len(hits)} units have {key} {value!r}; match by code instead")
            report.rejected.append({"row": int(label), "reason": f"row {label}: {why}"})
            continue
        values = {c: row[c] for c in UNIT_FIELDS if c != key and row.get(c) not in (None, "")}
        updates.append((hits[0], values | {"placeholder": False} if match == "name" else values))
    report.accepted = len(updates)
    return updates


def import_file(store: Store | None, path: str | Path, layer_name: str, *, crs: str | None = None,
                layer: str | None = None, encoding: str | None = None, x: str | None = None,
                y: str | None = None, column_map: dict[str, str] | None = None,
                dry_run: bool = False, skip_invalid: bool = False, match: str | None = None,
                tz: str | None = None, status_map: dict[str, str] | None = None,
                valid_from=None, now=None) -> Report:
    """Import one file into one layer of `store` (None only with dry_run). With `match`
    ("name" or "code", units only) the rows update the units already in the store instead of
    adding new ones: person, phone, credit code, address and type are filled in. Zones go in
    as new versions by code, in force from `valid_from` (default: the city's date at `now`)."""
    try:
        spec = get_layer(layer_name)
    except KeyError as exc:
        raise InputError(exc.args[0]) from None
    if spec.name == "patrols":  # a track's times live in its points (GPX) or a list: its own reader
        from .patrols import import_tracks

        return import_tracks(store, path, layer=layer, crs=crs, dry_run=dry_run, skip_invalid=skip_invalid)
    if match is not None and (spec.name != "units" or match not in MATCH_KEYS):
        raise InputError("--match name|code updates existing units: use it with --as units")
    source = read_file(path, layer=layer, encoding=encoding, x=x, y=y)
    frame, report = prepare(source, spec, crs, column_map,
                            required={MATCH_KEYS[match]} if match else None)
    report.dry_run = dry_run
    if match is not None:
        if store is None:
            raise InputError("--match needs the store to match against")
        updates = _unit_updates(store, frame, report, match)
        report.rejected.sort(key=lambda r: r["row"])
        if report.rejected and not skip_invalid:
            report.error = (f"{len(report.rejected)} of {report.rows} rows match no single unit, so "
                            "nothing was written; fix them, or pass --skip-invalid to update the others")
            return report
        if not dry_run:
            with store.transaction() as tx:
                for fid, values in updates:
                    tx.update("units", fid, values)
            report.written = len(updates)
        return report
    if report.rejected and not skip_invalid:
        report.error = (f"{len(report.rejected)} of {report.rows} rows are unusable, so nothing was "
                        "written; fix them, or pass --skip-invalid to import the others")
        return report
    if report.accepted == 0:
        report.error = "no usable rows; nothing was written"
        return report
    if spec.name == "problems":
        return _import_problems(store, frame, report, tz, status_map, dry_run)
    if spec.name == "zones":
        return _import_zones(store, frame, report, source.row_word, skip_invalid, dry_run, valid_from, now)
    if not dry_run:
        if store is None:
            raise ValueError("a store is needed unless dry_run")
        report.written = store.append(spec.name, frame)
    return report


def _import_zones(store, frame, report: Report, row_word: str, skip_invalid: bool, dry_run: bool,
                  valid_from, now) -> Report:
    """Zones never go in as plain rows: a code in force gets a new version (the old one closed),
    an unchanged zone writes nothing, a new code is a new zone (layers.zones versioning)."""
    from . import zones

    if store is None:
        raise InputError("a zones import compares the file with the zones in force: it needs the store")
    plan = zones.plan_import(store, frame, valid_from, now)
    report.rejected += [{"row": n, "reason": f"{row_word} {n}: {why}"} for n, why in plan.problems.items()]
    report.rejected.sort(key=lambda r: r["row"])
    report.accepted = len(frame) - len(plan.problems)
    report.zones = plan.counts()
    if plan.problems and not skip_invalid:
        report.error = (f"{len(report.rejected)} of {report.rows} rows are unusable, so nothing was "
                        "written; fix them, or pass --skip-invalid to import the others")
        return report
    if not dry_run:
        report.written = zones.write_import(store, frame, plan)
    return report


# A file's own statuses, read as zonemap states (a city passes --status-map for others).
STATUS_WORDS = {"open": "processing", "closed": "closed", "close": "closed", "resolved": "closed",
                "completed": "closed", "new": "reported", "voided": "voided", "cancelled": "voided",
                "已结案": "closed", "结案": "closed", "已办结": "closed", "办结": "closed", "已完成": "closed",
                "处理中": "processing", "处置中": "processing", "已派遣": "dispatched", "待处理": "dispatched",
                "已立案": "filed", "待核实": "verifying", "已上报": "reported", "待受理": "reported",
                "作废": "voided", "已作废": "voided", "挂账": "shelved", "已挂账": "shelved"}


def _import_problems(store, frame, report: Report, tz, status_map, dry_run) -> Report:
    """Problems go in as cases: routed, with their own times and states when the file has them
    (naive times are local to `tz`), placeholder locations flagged rather than routed."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from .cases import intake
    from .users import User
    from .workflow import STATES, Workflow

    tz = tz or Workflow.load().timezone
    try:
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise InputError(f"--tz {tz!r} is not an IANA time zone (e.g. Asia/Shanghai, America/New_York)") from None
    frame = frame.copy()
    for c in ("reported_at", "target_at", "closed_at"):
        if c in frame:
            frame[c] = [None if v is None or v is pd.NaT or (isinstance(v, float) and math.isnan(v))
                        else (pd.Timestamp(v).tz_localize(zone) if pd.Timestamp(v).tzinfo is None
                              else pd.Timestamp(v)).tz_convert("UTC") for v in frame[c]]
    words = {k.lower(): v for k, v in (STATUS_WORDS | (status_map or {})).items()}
    bad = [v for v in (status_map or {}).values() if v not in STATES]
    if bad:
        raise InputError(f"--status-map: {bad[0]!r} is not a state; the states are {', '.join(STATES)}")
    if "source_status" in frame:
        states = []
        for text, src in zip(frame["source_status"], frame["source"]):
            key = None if text is None else str(text).strip()
            state = key if key in STATES else words.get((key or "").lower())
            if key and state is None:
                row = int(src.rsplit("#", 1)[1])
                report.rejected.append({"row": row, "reason": f"row {row}: status {key!r} is not known; "
                                        f"map it with --status-map {key}=STATE ({', '.join(STATES)})"})
            states.append(state)
        frame["status"] = states
        if any(s is None for s in states) and any(s is not None for s in states):
            frame["status"] = [s or "reported" for s in states]
    if report.rejected:
        report.rejected.sort(key=lambda r: r["row"])
        report.error = (f"{len(report.rejected)} of {report.rows} rows are unusable, so nothing was written; "
                        "fix them or pass --status-map")
        return report
    if "location_placeholder" in frame:
        n = int(frame["location_placeholder"].fillna(False).astype(bool).sum())
        if n:
            report.warnings.append(f"{n} rows have a placeholder location (the source could not place "
                                   "them): kept and flagged, routed as 'unlocated' to the fallback party")
        report.flagged = n
    if dry_run:
        return report
    if store is None:
        raise ValueError("a store is needed unless dry_run")
    frame["lon"] = frame.geometry.x
    frame["lat"] = frame.geometry.y
    has_status = "status" in frame and frame["status"].notna().any()
    answers = intake(store, pd.DataFrame(frame.drop(columns="geometry")), User("import", "admin"), "file",
                     dedupe=not has_status, allow_empty=True, source_label=report.file)
    report.written = len(answers)
    report.routed = {str(k): int(v) for k, v in answers["routed_by"].value_counts().items()}
    report.linked = int((answers["status"] == "linked").sum())
    return report


OSM_LAYERS = ("buildings", "roads", "pois", "areas")


def import_osm(store: Store | None, path: str | Path, *, bbox=None, margin_m: float = 200.0,
               replace: bool = False, dry_run: bool = False) -> dict:
    """Import an OSM extract into buildings, roads, pois and areas, in one transaction.

    Refuses when the store already holds OSM rows, unless `replace` (which swaps them for the
    new extract's, in the same transaction)."""
    from .osm import read_osm

    layers = read_osm(path, bbox=bbox, margin_m=margin_m)
    report = {"file": Path(path).name, "bbox": list(bbox) if bbox else None, "dry_run": dry_run,
              "counts": {k: len(v) for k, v in layers.items()}, "replaced": {}, "written": 0}
    if dry_run:
        return report
    if store is None:
        raise ValueError("a store is needed unless dry_run")
    existing = {n: int((store.read(n)["source"] == "osm").sum()) for n in OSM_LAYERS} \
        if not replace else {}
    if any(existing.values()):
        held = ", ".join(f"{v} {k}" for k, v in existing.items() if v)
        raise InputError(f"the store already holds OpenStreetMap rows ({held}); pass --replace "
                         "to swap them for this extract's")
    with store.transaction() as tx:
        for name in OSM_LAYERS:
            if replace:
                report["replaced"][name] = tx.delete_source(name, "osm")
            report["written"] += tx.append(name, layers[name])
    return report
