"""Unit notices (门前三包责任告知书 / 责任书): one printable page per responsible unit, as HTML
and PDF. Each page has a map of the unit's zones over their neighbours, roads and buildings,
the zones' 四至 and measures, the duties (三包内容) with the standards of
`layers/rules/notice.toml` (a city's own copy in $ZONEMAP_RULES), the responsible person, the
validity period in city dates and the seal lines. A street's notices are one PDF, a unit a page.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import pandas as pd

from . import printing
from .deadlines import rule_file
from .errors import InputError, NotFound
from .evaluate import _toml
from .export import KIND_ZH, grid_of, matches_street, split_names
from .store import Store
from .zones import city_today, current

FALLBACK_PREFIX = "FALLBACK-"  # the street office and the 环卫 unit: 属地兜底, not a notice's unit


@dataclass(frozen=True)
class NoticeRules:
    title: str
    issuer: str
    intro: str
    penalty: str
    signatures: tuple[str, ...]
    duties: dict  # duty word → {"label": …, "standard": …}


def load_rules(path: Path | None = None) -> NoticeRules:
    """notice.toml, checked: every text a string, every duty with a label and a standard."""
    path = path or rule_file("notice.toml")
    data = _toml(Path(path))  # the rules files' one reader: a missing or broken file named
    texts = ("title", "issuer", "intro", "penalty")
    for key in texts:
        if not isinstance(data.get(key), str):
            raise InputError(f"{path}: `{key}` must be a text (in quotes)")
    signatures = data.get("signatures")
    if not (isinstance(signatures, list) and signatures and all(isinstance(s, str) for s in signatures)):
        raise InputError(f"{path}: `signatures` must be a list of texts, e.g. [\"责任单位（盖章）\"]")
    duties = data.get("duties", {})
    for word, d in duties.items():
        if not (isinstance(d, dict) and isinstance(d.get("label"), str) and isinstance(d.get("standard"), str)):
            raise InputError(f"{path}: [duties.\"{word}\"] needs label = \"…\" and standard = \"…\"")
    return NoticeRules(*(data[k] for k in texts), tuple(signatures), duties)


# ---- which units ------------------------------------------------------------------------------

def _zones_in_force(store: Store, as_of: dt.date) -> gpd.GeoDataFrame:
    zones = current(store.read("zones"), as_of)
    if zones.empty:
        raise NotFound(f"no zones in force on {as_of}: generate or import zones first, or give --as-of")
    return zones


def units_on_street(zones: gpd.GeoDataFrame, grid: gpd.GeoDataFrame, street: str) -> list[str]:
    """The units (primary or co-responsible) of the zones on `street` (a road name in a zone's
    street, or its grid cell's street office), in zone-code order; not the 属地兜底 units."""
    cells = grid_of(zones, grid)
    on = [matches_street(s, g, street) for s, g in zip(zones["street"], cells["g_street"])]
    picked = zones[on].sort_values("code")
    if picked.empty:
        known = sorted({n for s in zones["street"] for n in split_names(s)})
        raise NotFound(f"no zone in force lies on street {street!r}; streets are e.g. "
                       f"{', '.join(known[:12]) or '(none named)'}")
    ids = [u for pair in zip(picked["primary_unit"], picked["co_unit"]) for u in pair]
    return list(dict.fromkeys(u for u in ids if isinstance(u, str) and u and not u.startswith(FALLBACK_PREFIX)))


# ---- one notice -------------------------------------------------------------------------------

def _date(value) -> dt.date | None:
    return None if value is None or pd.isna(value) else pd.Timestamp(value).date()


def _validity(zones: pd.DataFrame) -> str:
    """From the earliest zone's first day; to the day before the first zone ends, or open."""
    starts = [d for d in map(_date, zones["valid_from"]) if d]
    ends = [d for d in map(_date, zones["valid_to"]) if d]
    start = f"自 {min(starts).isoformat()} 起" if starts else "自发出之日起"
    if ends:
        return f"{start}至 {(min(ends) - dt.timedelta(days=1)).isoformat()} 止"
    return f"{start}，至责任区调整、重新告知时止"


def _number(value, digits: int = 1) -> str:
    return "—" if value is None or pd.isna(value) else f"{float(value):,.{digits}f}"


def _zone_rows(zones: pd.DataFrame, unit_id: str) -> list[dict]:
    return [{"code": z.code, "kind": KIND_ZH.get(z.kind, z.kind),
             "role": "主责" if z.primary_unit == unit_id else "协同",
             "bounds": [s for s in str(z.bounds_text or "").replace(";", "；").split("；") if s.strip()],
             "street": z.street or "", "area": _number(z.area_m2), "frontage": _number(z.frontage_len_m),
             "depth": _number(z.depth_m), "from": str(_date(z.valid_from) or "—"),
             "to": str(_date(z.valid_to) - dt.timedelta(days=1)) if _date(z.valid_to) else "—"}
            for z in zones.itertuples()]


def _duties(zones: pd.DataFrame, rules: NoticeRules) -> list[dict]:
    """The duties named by the unit's zones, in their order, each with its standard."""
    words = dict.fromkeys(w.strip() for d in zones["duties"].fillna("") for w in split_names(d) if w.strip())
    return [{"label": rules.duties.get(w, {}).get("label", w),
             "standard": rules.duties.get(w, {}).get("standard", "按本市有关标准执行。")} for w in words]


def _unit(units: pd.DataFrame, unit_id: str) -> dict:
    if unit_id not in units.index:
        raise NotFound(f"no unit {unit_id!r}; see `zonemap zones list` for the units of the zones")
    u = units.loc[unit_id]

    def text(col):
        v = u.get(col)
        return "" if v is None or pd.isna(v) else str(v)

    return {"unit_id": unit_id, "name": text("name"), "credit_code": text("credit_code"),
            "address": text("address"), "person": text("person"), "phone": text("phone"),
            "placeholder": bool(u.get("placeholder")) if pd.notna(u.get("placeholder")) else False}


def zone_map(zones: gpd.GeoDataFrame, mine: gpd.GeoDataFrame, base: printing.Basemap) -> str:
    """A PNG (data: URL) of the unit's zones in red over the neighbouring zones, the roads and
    buildings, with codes, a scale bar in metres and a north arrow."""
    own = mine.to_crs(base.crs)
    box = printing.view_box(own.geometry)
    fig = printing.figure(17, 10.5)
    ax = fig.add_subplot()
    osm = printing.draw_base(ax, base, box)
    around = zones.to_crs(base.crs).cx[box[0]:box[2], box[1]:box[3]]
    around = around[~around["code"].isin(own["code"])]
    if not around.empty:
        around.plot(ax=ax, facecolor="#e8f0fa", edgecolor="#6d8fb3", linewidth=0.4, alpha=0.6, zorder=3)
    own.plot(ax=ax, facecolor="#e34a33", edgecolor="#b30000", linewidth=1.0, alpha=0.55, zorder=4)
    for code, point in zip(own["code"], own.geometry.representative_point()):
        ax.text(point.x, point.y, code, fontsize=7, fontweight="bold", ha="center", va="center", zorder=8,
                parse_math=False, bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "#b30000", "lw": 0.5})
    printing.finish_map(ax, box, base.crs, osm)
    return printing.png_data_uri(fig)


def notice_pages(store: Store, unit_ids: list[str], as_of: dt.date, rules: NoticeRules | None = None) -> list[dict]:
    """What each unit's page shows: the unit, its zones (rows and map), duties, validity."""
    rules = rules or load_rules()
    zones = _zones_in_force(store, as_of)
    units = store.read("units").drop_duplicates("unit_id").set_index("unit_id")
    mine_of = {u: zones[(zones["primary_unit"] == u) | (zones["co_unit"] == u)].sort_values("code") for u in unit_ids}
    for u, mine in mine_of.items():
        if mine.empty:
            _unit(units, u)  # an unknown unit says so
            raise NotFound(f"unit {u!r} answers for no zone in force on {as_of}; nothing to notify")
    base = printing.Basemap.read(store, pd.concat(mine_of.values()))
    return [{"unit": _unit(units, u), "zones": _zone_rows(mine, u), "duties": _duties(mine, rules),
             "validity": _validity(mine), "map": zone_map(zones, mine, base)} for u, mine in mine_of.items()]


def write_notices(store: Store, out, *, unit_id: str | None = None, street: str | None = None,
                  as_of: dt.date | None = None) -> dict:
    """The notice of one unit, or of every unit of a street (one per page), to `out` (.pdf or
    .html). Checks the Chinese font first: a PDF of boxes is never written."""
    if bool(unit_id) == bool(street):
        raise InputError("give either --unit UNIT_ID or --street STREET")
    kind = printing.output_kind(out, ("pdf", "html"))
    printing.cjk_font()
    rules = load_rules()
    as_of = as_of or city_today()
    if street:
        zones = _zones_in_force(store, as_of)
        grid = store.read("grid") if store.count("grid") else gpd.GeoDataFrame()
        unit_ids = units_on_street(zones, grid, street)
    else:
        unit_ids = [unit_id]
    pages = notice_pages(store, unit_ids, as_of, rules)
    title = f"{rules.title}（{street or pages[0]['unit']['name']}）"
    html = printing.render_html("notice.html", title=title, rules=rules, notices=pages, as_of=as_of.isoformat())
    n_pages = printing.write_document(html, out)
    return {"out": str(out), "format": kind, "units": [p["unit"]["unit_id"] for p in pages],
            "pages": n_pages, "as_of": as_of.isoformat()}
