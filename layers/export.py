"""Exports: the 台账 ledger (XLSX, CSV) and GIS files (GeoPackage, Shapefile, GeoJSON, KML).

The ledger is one row per zone in force on a date, with Chinese headers (domain-reference.md
§2.5): where the zone is, what it measures, who answers for it (unit, credit code, person,
phone), its version, and how it did in a period (problems, on-time rate, last inspection).
It holds personal fields (责任人, 联系电话): it is for staff. It is written row by row —
xlsxwriter in constant_memory mode, the csv module — never through pandas' to_excel, whose
constant_memory path silently kept only the first column (../shared/docs/performance.md).

GIS files carry zones (with their units' names), units, or cases (with state, category and
unit names, times as city-time text). Which columns go out is the allow-list the web uses
(layers.privacy.visible_columns): `public=True` is exactly what the public may see anywhere,
so "public" has one definition. Files are written with pyogrio (bulk I/O through GDAL)."""

from __future__ import annotations

import csv
import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import shapely

from .errors import InputError, NotFound
from .privacy import visible_columns
from .schema import LAYERS, STORAGE_CRS
from .store import Store
from .workflow import LINKED, STATE_ZH
from .zones import current

# ---- the ledger ------------------------------------------------------------------------------

KIND_ZH = {"frontage": "门前三包", "unit": "单位卫生责任区", "site": "施工现场", "public": "公共区域（属地兜底）"}
CLEANING_ZH = "公共区域专业保洁"  # a public zone of the 环卫 unit: carriageways
CLEANING_UNIT = "FALLBACK-HW"

# (header, kind of value, column width in characters). Kinds: text, int, real, rate.
LEDGER_COLUMNS = (
    ("责任区编号", "text", 11), ("类型", "text", 16),
    ("街道", "text", 18), ("社区", "text", 12), ("网格", "text", 17),
    ("东至", "text", 16), ("西至", "text", 16), ("南至", "text", 16), ("北至", "text", 16),
    ("临街长度(m)", "real", 11), ("纵深(m)", "real", 9), ("面积(m²)", "real", 11),
    ("责任单位", "text", 26), ("统一社会信用代码", "text", 20), ("责任人", "text", 10),
    ("联系电话", "text", 15), ("三包内容", "text", 14), ("版本与生效日期", "text", 26),
    ("期内问题数", "int", 10), ("按期整改率", "rate", 10), ("最近检查日期与结果", "text", 22),
    ("备注", "text", 36),
)
LEDGER_HEADERS = tuple(h for h, _, _ in LEDGER_COLUMNS)
NO_RATE = "—"  # a period with no case due: no rate (never a division by zero)
NOT_COUNTED = (LINKED, "voided")  # a duplicate report is not a problem of its own; a void one none
SIDES = ("东至", "西至", "南至", "北至")
NO_STREET_SHEET = "未注明街道"


@dataclass(frozen=True)
class Period:
    """[start, end) in UTC, with the label people read (2026-11, or 2026-11-03～2026-11-20)."""

    start: pd.Timestamp
    end: pd.Timestamp
    label: str


def month_period(month: str, tz) -> Period:
    """The city's calendar month `month` (YYYY-MM)."""
    if not re.fullmatch(r"\d{4}-\d{2}", month or "") or not 1 <= int(month[5:]) <= 12:
        raise InputError(f"period {month!r}: give a month as YYYY-MM, e.g. 2026-11")
    first = dt.date(int(month[:4]), int(month[5:]), 1)
    after = (first + dt.timedelta(days=32)).replace(day=1)
    return Period(_city_midnight(first, tz), _city_midnight(after, tz), month)


def day_period(since: dt.date, until: dt.date, tz) -> Period:
    """From the first instant of `since` to the last of `until` (both city dates, included)."""
    if until < since:
        raise InputError(f"--until {until} is before --since {since}")
    return Period(_city_midnight(since, tz), _city_midnight(until + dt.timedelta(days=1), tz),
                  f"{since}～{until}")


def _city_midnight(day: dt.date, tz) -> pd.Timestamp:
    return pd.Timestamp(day).tz_localize(tz, nonexistent="shift_forward").tz_convert("UTC")


def choose_period(tz, *, month: str | None = None, since: dt.date | None = None,
                  until: dt.date | None = None, as_of: dt.date | None = None) -> Period:
    """The ledger's period: a month, or since/until (either may be left open to the as-of
    month's edge), else the month of `as_of` (today in the city when None)."""
    if month and (since or until):
        raise InputError("give either --period or --since/--until, not both")
    if month:
        return month_period(month, tz)
    day = as_of or dt.datetime.now(tz).date()
    if since or until:
        first = day.replace(day=1)
        last = (first + dt.timedelta(days=32)).replace(day=1) - dt.timedelta(days=1)
        return day_period(since or first, until or last, tz)
    return month_period(day.strftime("%Y-%m"), tz)


@dataclass
class Ledger:
    """The rows (one list per zone, in LEDGER_COLUMNS' order) and the sheet each belongs to."""

    rows: list[list]
    sheets: list[str]
    as_of: dt.date | None
    period: Period
    streets: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        return {"rows": len(self.rows), "as_of": str(self.as_of) if self.as_of else None,
                "period": self.period.label, "sheets": len(set(self.sheets))}


def split_names(text) -> list[str]:
    """The street names of a zone's `street` value ("中山南路、石鼓路")."""
    if not isinstance(text, str):
        return []
    return [s.strip() for s in re.split(r"[、,，;；/]", text) if s.strip()]


def split_bounds(text) -> dict:
    """四至 text ("东至A；西至B；南至C；北至D") as {"东至": "A", …}; sides not named are ""."""
    out = dict.fromkeys(SIDES, "")
    for part in re.split(r"[；;,，\n]", text if isinstance(text, str) else ""):
        part = part.strip()
        if part[:2] in out:
            out[part[:2]] = part[2:].strip()
    return out


def grid_of(zones: gpd.GeoDataFrame, grid: gpd.GeoDataFrame) -> pd.DataFrame:
    """Street, community and code of the grid cell holding each zone's representative point."""
    out = pd.DataFrame({"g_street": None, "g_community": None, "g_code": None}, index=zones.index, dtype=object)
    if grid.empty or zones.empty:
        return out
    points = shapely.point_on_surface(zones.geometry.to_numpy())
    z_i, g_i = shapely.STRtree(grid.geometry.to_numpy()).query(points, predicate="within")
    first = pd.Series(g_i, index=z_i)
    first = first[~first.index.duplicated()]  # a point on a shared edge: the first cell
    rows = zones.index[first.index.to_numpy()]
    for col, src in (("g_street", "street"), ("g_community", "community"), ("g_code", "code")):
        out.loc[rows, col] = grid[src].to_numpy()[first.to_numpy()]
    return out


def _utc64(values) -> np.ndarray:
    """Instants as naive UTC datetime64 (NaT for none: it compares False with everything)."""
    return pd.to_datetime(pd.Series(values), utc=True, errors="coerce").dt.tz_convert(None).to_numpy("datetime64[ns]")


def _at64(t: pd.Timestamp) -> np.datetime64:
    return t.tz_convert(None).to_datetime64()


def _period_figures(problems: pd.DataFrame, period: Period) -> pd.DataFrame:
    """Per zone code: problems reported in the period, cases due in it (a disposal deadline
    in the period: the 应结案数 of domain.md) and how many of those closed by their deadline."""
    cols = ["problems", "due", "on_time"]
    if problems.empty:
        return pd.DataFrame(columns=cols, dtype=int)
    p = problems[~problems["status"].isin(NOT_COUNTED) & problems["zone_code"].notna()]
    at, due, closed = (_utc64(p[c]) for c in ("reported_at", "target_at", "closed_at"))
    start, end = _at64(period.start), _at64(period.end)
    in_period = (at >= start) & (at < end)
    is_due = (due >= start) & (due < end)
    on_time = is_due & (p["status"].to_numpy() == "closed") & (closed <= due)
    table = pd.DataFrame({"zone": p["zone_code"].to_numpy(), "problems": in_period, "due": is_due,
                          "on_time": on_time})
    return table.groupby("zone")[cols].sum().astype(int)


def _last_inspections(store: Store, zones: pd.DataFrame, as_of: dt.date | None, tz) -> list[str]:
    """Per zone, "date result" of its latest inspection by the end of `as_of` (city date):
    of the zone itself, or of its primary unit when that is later. Empty without an
    `inspections` layer (an older schema) or inspections."""
    if "inspections" not in LAYERS or not store.count("inspections"):
        return [""] * len(zones)
    frame = store.read("inspections")
    when = pd.to_datetime(frame["inspected_at"], utc=True, errors="coerce").dt.tz_convert(tz)
    keep = when.notna() & ((when.dt.date <= as_of) if as_of is not None else True)
    frame = frame[keep.to_numpy()].assign(_when=when[keep]).sort_values("_when")
    by_zone = frame[frame["zone_code"].notna()].drop_duplicates("zone_code", keep="last").set_index("zone_code")
    by_unit = frame[frame["unit_id"].notna()].drop_duplicates("unit_id", keep="last").set_index("unit_id")
    out = []
    for code, unit in zip(zones["code"], zones["primary_unit"]):
        found = [t.loc[k] for t, k in ((by_zone, code), (by_unit, unit)) if k is not None and k in t.index]
        out.append(_inspection_text(max(found, key=lambda r: r["_when"])) if found else "")
    return out


def _inspection_text(row) -> str:
    """"2026-11-12 合格 92分"."""
    parts = [row["_when"].strftime("%Y-%m-%d")]
    if row.get("passed") is not None and not pd.isna(row.get("passed")):
        parts.append("合格" if bool(row["passed"]) else "不合格")
    if row.get("total") is not None and not pd.isna(row.get("total")):
        parts.append(f"{float(row['total']):g}分")
    return " ".join(parts)


def _version_texts(zones: pd.DataFrame) -> list[str]:
    """"v2，2026-03-01 起" (and "，2026-06-01 止" once closed) per zone."""
    version = pd.to_numeric(zones["version"], errors="coerce").fillna(1).astype(int).tolist()
    since, until = (_day_texts(zones[c]) for c in ("valid_from", "valid_to"))
    return [f"v{v}，{f} 起" + (f"，{t} 止" if t else "") for v, f, t in zip(version, since, until)]


def _day_texts(values) -> list:
    days = pd.to_datetime(pd.Series(values), errors="coerce")
    return [t if isinstance(t, str) else None for t in days.dt.strftime("%Y-%m-%d").astype(object)]


def _note(placeholder: bool, co_name, primary) -> str:
    parts = []
    if not primary:
        parts.append("未指定责任单位")
    elif placeholder:
        parts.append("责任单位名称待核实（按地址或编号暂定）")
    if co_name:
        parts.append(f"协同单位：{co_name}")
    return "；".join(parts)


def _kind_text(kind, unit_id) -> str:
    if kind == "public" and unit_id == CLEANING_UNIT:
        return CLEANING_ZH
    return KIND_ZH.get(kind, kind or "")


def matches_street(zone_street, grid_street, wanted: str) -> bool:
    return wanted in split_names(zone_street) or (isinstance(grid_street, str) and grid_street == wanted)


def sheet_name(text: str, taken: set) -> str:
    """An Excel sheet name for `text`: no []:*?/\\ characters, at most 31, unique."""
    base = re.sub(r"[\[\]:*?/\\']", "_", text).strip() or NO_STREET_SHEET
    base = base[:31]
    name, n = base, 2
    while name.lower() in taken:
        suffix = f"({n})"
        name, n = base[:31 - len(suffix)] + suffix, n + 1
    taken.add(name.lower())
    return name


def ledger(store: Store, *, as_of: dt.date | None = None, street: str | None = None,
           period: Period | None = None, tz=None) -> Ledger:
    """The ledger of the zones in force on `as_of` (today's set when None), optionally only
    those of one street (a road name in the zone's 街道, or its grid cell's street office)."""
    from .cases import Rules

    tz = tz or Rules().tz
    period = period or choose_period(tz, as_of=as_of)
    zones = current(store.read("zones"), as_of)
    if zones.empty:
        raise NotFound(f"no zones in force on {as_of or 'today'}: generate or import zones first, "
                       "or give an --as-of date when they were")
    zones = zones.sort_values("code").reset_index(drop=True)
    grid = grid_of(zones, store.read("grid") if store.count("grid") else gpd.GeoDataFrame())
    street_of = [s if s else g for s, g in zip(zones["street"], grid["g_street"])]
    if street:
        keep = np.array([matches_street(s, g, street) for s, g in zip(zones["street"], grid["g_street"])])
        if not keep.any():
            known = sorted({n for s in street_of for n in split_names(s)})
            raise NotFound(f"no zone in force lies on street {street!r}; streets are e.g. "
                           f"{', '.join(known[:12]) or '(none named)'}")
        zones, grid = zones[keep].reset_index(drop=True), grid[keep].reset_index(drop=True)
        street_of = [s for s, k in zip(street_of, keep) if k]
    rows = _ledger_rows(store, zones, grid, street_of, period, as_of, tz)
    sheets = [(split_names(s) or [NO_STREET_SHEET])[0] for s in street_of]
    return Ledger(rows, sheets, as_of, period, sorted(set(sheets)))


def _ledger_rows(store, zones, grid, street_of, period, as_of, tz) -> list[list]:
    """The rows, built column by column (a Python loop per cell costs ten times more)."""
    units = store.read("units").drop_duplicates("unit_id").set_index("unit_id")
    fig = _period_figures(store.read("problems"), period).reindex(zones["code"]).fillna(0).astype(int)
    inspected = _last_inspections(store, zones, as_of, tz)
    unit = units.reindex(zones["primary_unit"].fillna(""))
    co_names = _texts(units["name"].reindex(zones["co_unit"].fillna("")))
    sides = [split_bounds(t) for t in zones["bounds_text"]]
    placeholder = [v is not None and not pd.isna(v) and bool(v) for v in unit["placeholder"]]
    due, on_time = fig["due"].tolist(), fig["on_time"].tolist()
    columns = [
        zones["code"].tolist(), [_kind_text(k, u) for k, u in zip(zones["kind"], zones["primary_unit"])],
        [s or "" for s in street_of], _texts(grid["g_community"]), _texts(grid["g_code"]),
        *([side[k] for side in sides] for k in SIDES),
        _reals(zones["frontage_len_m"]), _reals(zones["depth_m"]), _reals(zones["area_m2"]),
        *(_texts(unit[c]) for c in ("name", "credit_code", "person", "phone")), _texts(zones["duties"]),
        _version_texts(zones),
        fig["problems"].tolist(), [o / d if d else None for o, d in zip(on_time, due)],
        inspected,
        [_note(p, c, u) for p, c, u in zip(placeholder, co_names, zones["primary_unit"])],
    ]
    return [list(row) for row in zip(*columns)]


def _texts(values) -> list[str]:
    return ["" if v is None or (not isinstance(v, str) and pd.isna(v)) else str(v) for v in values]


def _reals(values, digits: int = 1) -> list:
    a = np.round(pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=float), digits)
    return [None if np.isnan(v) else float(v) for v in a]


# ---- writing the ledger --------------------------------------------------------------------

Progress = Callable[[int], None] | None
PROGRESS_EVERY = 1000


def write_ledger(book: Ledger, out, fmt: str, *, by_street: bool = False, progress: Progress = None) -> dict:
    """Write `book` to `out` as xlsx or csv (rows streamed); `progress(n)` is told every
    PROGRESS_EVERY rows."""
    if fmt == "xlsx":
        _write_xlsx(book, Path(out), by_street, progress)
    elif fmt == "csv":
        if by_street:
            raise InputError("--sheets-by-street needs --format xlsx (a CSV file has one table)")
        _write_csv(book, Path(out), progress)
    else:
        raise InputError(f"--format {fmt!r}: the ledger is written as xlsx or csv")
    return {**book.summary(), "file": str(out), "format": fmt}


def _tick(progress: Progress, n: int) -> None:
    if progress is not None and n % PROGRESS_EVERY == 0:
        progress(PROGRESS_EVERY)


def _groups(book: Ledger, by_street: bool) -> list[tuple[str, list[int]]]:
    if not by_street:
        return [("责任区台账", list(range(len(book.rows))))]
    order: dict[str, list[int]] = {}
    for i, s in enumerate(book.sheets):
        order.setdefault(s, []).append(i)
    return sorted(order.items())


def _write_xlsx(book: Ledger, out: Path, by_street: bool, progress: Progress) -> None:
    import xlsxwriter

    wb = xlsxwriter.Workbook(str(out), {"constant_memory": True, "strings_to_formulas": False,
                                        "strings_to_urls": False})
    fmt = {"header": wb.add_format({"bold": True, "bg_color": "#DDEBF7", "border": 1, "text_wrap": True,
                                    "valign": "vcenter"}),
           "real": wb.add_format({"num_format": "0.0"}), "rate": wb.add_format({"num_format": "0.0%"})}
    taken: set = set()
    written = 0
    try:
        for name, idx in _groups(book, by_street):
            ws = wb.add_worksheet(sheet_name(name, taken))
            for c, (_, _, width) in enumerate(LEDGER_COLUMNS):
                ws.set_column(c, c, width)
            ws.freeze_panes(1, 0)
            ws.autofilter(0, 0, max(len(idx), 1), len(LEDGER_COLUMNS) - 1)
            ws.write_row(0, 0, LEDGER_HEADERS, fmt["header"])
            for r, i in enumerate(idx, start=1):
                _xlsx_row(ws, r, book.rows[i], fmt)
                written += 1
                _tick(progress, written)
    finally:
        wb.close()


def _xlsx_row(ws, r: int, row: list, fmt: dict) -> None:
    # each cell by its column's kind: text is never read as a formula or a URL
    for c, ((_, kind, _), v) in enumerate(zip(LEDGER_COLUMNS, row)):
        if kind == "rate" and v is None:
            ws.write_string(r, c, NO_RATE)
        elif v is None or v == "":
            continue
        elif kind == "text":
            ws.write_string(r, c, v)
        elif kind == "rate":
            ws.write_number(r, c, v, fmt["rate"])
        elif kind == "real":
            ws.write_number(r, c, v, fmt["real"])
        else:
            ws.write_number(r, c, v)


_FORMULA = re.compile(r"^[=+\-@\t\r]")
_NUMBERISH = re.compile(r"^[+-]?[\d\s().-]+$")  # +86 138…, -3.5: data, not a formula


def csv_cell(v, kind: str) -> str:
    """A ledger value as CSV text: a rate in per cent or "—"; text a spreadsheet would run as
    a formula (=, +, -, @ at the start) is quoted with a leading apostrophe."""
    if kind == "rate":
        return NO_RATE if v is None else f"{100 * v:.1f}%"
    if v is None:
        return ""
    if kind == "text" and _FORMULA.match(v) and not _NUMBERISH.match(v):
        return "'" + v
    return str(v)


def _write_csv(book: Ledger, out: Path, progress: Progress) -> None:
    kinds = [k for _, k, _ in LEDGER_COLUMNS]
    texts = [i for i, k in enumerate(kinds) if k == "text"]
    rate = kinds.index("rate")
    with out.open("w", encoding="utf-8-sig", newline="") as f:  # the BOM makes Excel read UTF-8
        w = csv.writer(f)
        w.writerow(LEDGER_HEADERS)
        for n, row in enumerate(book.rows, start=1):
            row = list(row)
            for i in texts:  # only text can start like a formula; most cells are left alone
                if row[i] and row[i][0] in "=+-@\t\r":
                    row[i] = csv_cell(row[i], "text")
            row[rate] = csv_cell(row[rate], "rate")
            w.writerow(row)
            _tick(progress, n)


# ---- GIS files -----------------------------------------------------------------------------

GIS_FORMATS = {"gpkg": ("GPKG", ".gpkg"), "shp": ("ESRI Shapefile", ".shp"), "geojson": ("GeoJSON", ".geojson"),
               "kml": ("LIBKML" if "LIBKML" in pyogrio.list_drivers(write=True) else "KML", ".kml")}
GIS_LAYERS = ("zones", "units", "cases")
ENCODINGS = {"utf-8": "UTF-8", "utf8": "UTF-8", "gbk": "GBK", "cp936": "GBK", "gb18030": "GB18030"}

# Shapefile (dBase) field names are at most 10 characters: each longer column gets a chosen
# short name, listed in the FILE.fields.txt written beside the .shp.
SHP_FIELDS = {
    "primary_unit": "prim_unit", "co_unit_name": "co_unit_nm", "frontage_len_m": "front_len",
    "bounds_text": "bounds", "credit_code": "credit_cd", "placeholder": "placeholdr",
    "reported_at": "reported", "public_report": "public_rep", "zone_version": "zone_ver",
    "location_placeholder": "loc_placeh", "duplicate_of": "dup_of", "stage_started_at": "stage_strt",
    "stage_deadline": "stage_due", "rework_count": "reworks", "extension_count": "extensions",
    "source_status": "src_status", "route_distance_m": "route_dist", "category_name": "cat_name",
    "change_kind": "chg_kind", "change_note": "chg_note",
}
EXTRA_DOCS = {"kind_zh": "类型 (Chinese)", "unit_name": "name of the primary unit (责任单位)",
              "co_unit_name": "name of the co-responsible unit (协同)", "status_zh": "state (Chinese)",
              "category_name": "category name (Chinese)", "name": "feature name shown by Google Earth"}


def gis_frame(store: Store, what: str, *, as_of: dt.date | None = None, public: bool = False,
              role: str = "admin", tz=None) -> gpd.GeoDataFrame:
    """Zones in force (with unit names), units, or cases as of a date, with the columns
    `role` may see (the public's with `public`)."""
    from .cases import Rules

    rules = Rules()
    tz = tz or rules.tz
    viewer = None if public else role
    if what == "zones":
        frame = _zones_frame(store, as_of, viewer)
    elif what == "units":
        if as_of is not None:
            raise InputError("units have no versions: --as-of applies to zones and cases")
        frame = _columns(store.read("units"), "units", viewer)
    elif what == "cases":
        frame = _cases_frame(store, as_of, viewer, rules, tz)
    else:
        raise InputError(f"export {what!r}: the GIS exports are {', '.join(GIS_LAYERS)}")
    return _city_times(frame, what, tz)


def _schema(what: str):
    return LAYERS["problems" if what == "cases" else what]


def _city_times(frame: gpd.GeoDataFrame, what: str, tz) -> gpd.GeoDataFrame:
    """Every time column as city-time text, the way people read times everywhere else."""
    schema = _schema(what)
    for c in frame.columns:
        if c in schema.column_names and schema.column(c).type == "datetime":
            frame[c] = city_text(frame[c], tz).to_numpy()
    return frame


def _columns(frame: gpd.GeoDataFrame, layer: str, viewer) -> gpd.GeoDataFrame:
    cols = visible_columns(layer, viewer)
    if not isinstance(frame, gpd.GeoDataFrame):
        frame = gpd.GeoDataFrame(frame, geometry=gpd.GeoSeries([None] * len(frame), crs=STORAGE_CRS))
    return gpd.GeoDataFrame(frame[cols].reset_index(drop=True), geometry=frame.geometry.reset_index(drop=True),
                            crs=STORAGE_CRS)


def _unit_names(store: Store) -> pd.Series:
    units = store.read("units")
    return units.drop_duplicates("unit_id").set_index("unit_id")["name"]


def _zones_frame(store, as_of, viewer) -> gpd.GeoDataFrame:
    zones = current(store.read("zones"), as_of).sort_values("code")
    out = _columns(zones, "zones", viewer)
    names = _unit_names(store)
    out.insert(2, "kind_zh", [_kind_text(k, u) for k, u in zip(out["kind"], out["primary_unit"])])
    out.insert(4, "unit_name", names.reindex(out["primary_unit"].fillna("")).to_numpy())
    out.insert(6, "co_unit_name", names.reindex(out["co_unit"].fillna("")).to_numpy())
    return out


def city_text(values, tz) -> pd.Series:
    """UTC instants as ISO 8601 text in the city's time zone with its offset (None for none)."""
    t = pd.to_datetime(pd.Series(values), utc=True, errors="coerce").dt.tz_convert(tz)
    text = t.dt.strftime("%Y-%m-%dT%H:%M:%S%z")
    text = (text.str[:-2] + ":" + text.str[-2:]).astype(object)
    return pd.Series([v if isinstance(v, str) else None for v in text], index=text.index, dtype=object)


def _as_of_end(as_of: dt.date, tz) -> pd.Timestamp:
    return _city_midnight(as_of + dt.timedelta(days=1), tz)


def _states_then(store: Store, problems: pd.DataFrame, cutoff: pd.Timestamp) -> tuple[np.ndarray, np.ndarray]:
    """The state of each case at `cutoff` from its steps, and whether it was closed by then.
    A case closed after `cutoff` whose steps before it already say closed (an imported case
    knows only its end state) was open then: it counts as processing (处置中)."""
    steps = store.read("case_steps")
    status = problems["status"].to_numpy(dtype=object).copy()
    if not steps.empty:
        at = pd.to_datetime(steps["at"], utc=True)
        last = steps[at < cutoff].sort_values(["problem_id", "seq"]).drop_duplicates("problem_id", keep="last")
        then = last.set_index("problem_id")["to_status"].reindex(problems["problem_id"]).to_numpy(dtype=object)
        has = pd.notna(then)
        status[has] = then[has]
    closed = _utc64(problems["closed_at"]) < _at64(cutoff)
    status[(status == "closed") & ~closed] = "processing"
    return status, closed


def _cases_frame(store, as_of, viewer, rules, tz) -> gpd.GeoDataFrame:
    p = store.read("problems")
    if as_of is not None and not p.empty:
        cutoff = _as_of_end(as_of, tz)
        p = p[_utc64(p["reported_at"]) < _at64(cutoff)].reset_index(drop=True)
        status, closed = _states_then(store, p, cutoff)
        p = p.assign(status=status, closed_at=p["closed_at"].where(closed, None))
    p = p.sort_values("problem_id") if not p.empty else p
    out = _columns(p, "problems", viewer)
    out.insert(2, "status_zh", [STATE_ZH.get(s, "重复上报" if s == LINKED else s) for s in out["status"]])
    cats = rules.categories
    out.insert(2, "category_name", [cats[c].name if c in cats else None for c in out["category"]])
    out.insert(out.columns.get_loc("unit_id") + 1, "unit_name",
               _unit_names(store).reindex(out["unit_id"].fillna("")).to_numpy())
    return out


def _plain(frame: gpd.GeoDataFrame, layer: str) -> gpd.GeoDataFrame:
    """Dates as ISO text and yes/no as 0/1 integers, by the schema's column types: every
    driver writes those the same way (a Shapefile has no boolean, KML no date)."""
    schema = _schema(layer)
    out = frame.copy()
    for c in out.columns:
        kind = schema.column(c).type if c in schema.column_names else None
        if kind == "date":
            out[c] = pd.Series(_day_texts(out[c]), index=out.index, dtype=object)
        elif kind == "boolean":
            out[c] = pd.array([None if v is None or pd.isna(v) else int(bool(v)) for v in out[c]], dtype="Int64")
    return out


def shapefile_fields(columns) -> dict:
    """Column → Shapefile field name (≤ 10 characters, unique): SHP_FIELDS' choice, the name
    itself when short, else its first characters numbered."""
    out, taken = {}, set()
    for c in columns:
        short = SHP_FIELDS.get(c, c if len(c) <= 10 else c[:8])
        n = 1
        while short.lower() in taken:
            short, n = f"{short[:8]}{n:02d}"[:10], n + 1
        taken.add(short.lower())
        out[c] = short
    return out


def _check_encodable(frame: gpd.GeoDataFrame, encoding: str, out: Path) -> None:
    for c in frame.columns:
        if frame[c].dtype != object or c == frame.geometry.name:
            continue
        for i, v in enumerate(frame[c]):
            if isinstance(v, str):
                try:
                    v.encode(encoding)
                except UnicodeEncodeError as exc:
                    raise InputError(f"{out.name}: row {i + 1}, field {c!r}: {v!r} cannot be written in "
                                     f"{encoding} ({exc.reason} at {v[exc.start:exc.end]!r}); write UTF-8 "
                                     "(the default) or fix the value") from None


def _fields_note(out: Path, mapping: dict, layer: str, encoding: str) -> Path:
    """FILE.fields.txt: each Shapefile field, the column it holds and what that means."""
    schema = _schema(layer)
    lines = [f"{out.name}: {layer}, text encoded in {encoding} (see {out.with_suffix('.cpg').name})",
             "field\tcolumn\tmeaning"]
    for col, short in mapping.items():
        doc = schema.column(col).doc if col in schema.column_names else EXTRA_DOCS.get(col, "")
        lines.append(f"{short}\t{col}\t{doc}")
    note = out.with_name(out.stem + ".fields.txt")
    note.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return note


def write_gis(frame: gpd.GeoDataFrame, out, fmt: str, *, layer: str, encoding: str | None = None) -> dict:
    """Write `frame` as `fmt` (gpkg, shp, geojson, kml) to `out`, replacing a file there."""
    if fmt not in GIS_FORMATS:
        raise InputError(f"--format {fmt!r}: GIS files are {', '.join(GIS_FORMATS)}")
    if encoding and fmt != "shp":
        raise InputError("--encoding is for Shapefiles (--format shp); the other formats are UTF-8")
    driver, suffix = GIS_FORMATS[fmt]
    out = Path(out)
    if out.suffix.lower() != suffix:
        raise InputError(f"--out {out.name}: a {fmt} file ends in {suffix}")
    frame = _plain(frame, layer)
    files = [out]
    options: dict = {}
    if fmt == "shp":
        enc = ENCODINGS.get((encoding or "utf-8").lower())
        if enc is None:
            raise InputError(f"--encoding {encoding!r}: use utf-8 or gbk (gb18030 for rare characters)")
        _check_encodable(frame, enc, out)
        mapping = shapefile_fields([c for c in frame.columns if c != frame.geometry.name])
        frame = frame.rename(columns=mapping)
        options["encoding"] = enc
        files += [out.with_suffix(".cpg"), _fields_note(out, mapping, layer, enc)]
    elif fmt == "kml" and "name" not in frame.columns:  # the placemark's label in Google Earth
        frame.insert(0, "name", _kml_names(frame, layer))
    elif fmt == "geojson":
        options["RFC7946"] = "YES"
    _remove(out, fmt)
    pyogrio.write_dataframe(frame, out, driver=driver, layer=layer if fmt in ("gpkg", "kml") else None,
                            **options)
    return {"file": str(out), "format": fmt, "layer": layer, "rows": len(frame),
            "files": [str(f) for f in files]}


def _kml_names(frame: gpd.GeoDataFrame, layer: str) -> list:
    key = {"zones": "code", "cases": "problem_id"}.get(layer, "")
    return frame[key].tolist() if key in frame.columns else [None] * len(frame)


def _remove(out: Path, fmt: str) -> None:
    """An earlier export at `out` (a Shapefile's sidecar files too) is replaced, not appended to."""
    sidecars = (".shp", ".shx", ".dbf", ".prj", ".cpg") if fmt == "shp" else (out.suffix,)
    for suffix in sidecars:
        out.with_suffix(suffix).unlink(missing_ok=True)


__all__ = ["GIS_FORMATS", "GIS_LAYERS", "KIND_ZH", "LEDGER_HEADERS", "Ledger", "Period", "choose_period",
           "csv_cell", "gis_frame", "grid_of", "ledger", "matches_street", "month_period", "shapefile_fields",
           "split_bounds", "split_names", "write_gis",
           "write_ledger"]
