"""The monthly bulletin (通报) of a city month: the month in figures, the units' ranking with
the best and the worst (红黑榜), a map of where the month's problems concentrated, charts (cases
by category and by day, on-time rate by street), the overdue cases and the 奖惩 list; as PDF
(or HTML) for the notice board, and as XLSX with the same tables.

The rankings are the month's evaluation (layers/evaluate.py: 综合指标值 and grade A–E from
evaluation.toml, the change from the previous month, 红榜/黑榜), per unit and per department;
the 奖惩 list is inspections.sanctions' (the rules of inspection.toml, computed, not saved);
the map shows the significant Getis–Ord Gi* hot cells of the month (layers/hotspots.py) over
the cases. The month's own figures and charts are counted here from the problems layer: a case
of the month was reported in it (linked duplicates and voided reports are not cases); a case is
due in the month when its disposal deadline falls in it, on time when it was closed by that
deadline; overdue when it was due and was closed late or not at all. Streets are the unit
grid's street office, else the zone's first road.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd

from . import printing
from .cases import Rules
from .errors import NotFound
from .evaluate import cell, evaluate
from .export import NOT_COUNTED, Period, month_period, split_names
from .store import Store

NO_RATE = "—"  # nothing was due: no rate, never a division by zero
UNKNOWN = "（未注明）"


@dataclass
class Month:
    """The month's figures: tables the PDF and the XLSX both show."""

    period: Period
    summary: list[tuple[str, str]]
    ranking: pd.DataFrame  # units, from the evaluation
    departments: pd.DataFrame  # departments, from the evaluation
    red: pd.DataFrame  # 红榜 and 黑榜 of the unit evaluation
    black: pd.DataFrame
    formula: str  # the evaluation formula's version
    by_category: pd.DataFrame
    by_day: pd.DataFrame
    by_street: pd.DataFrame
    overdue: pd.DataFrame
    sanctions: pd.DataFrame
    points: gpd.GeoDataFrame  # the month's located cases, for the map


def _times(values) -> pd.Series:
    return pd.to_datetime(pd.Series(values), utc=True, errors="coerce")


def _rate(num: int, den: int) -> str:
    return f"{num / den:.1%}" if den else NO_RATE


def _cases(store: Store) -> pd.DataFrame:
    p = store.read("problems")
    p = p[~p["status"].isin(NOT_COUNTED)].copy()
    for col in ("reported_at", "target_at", "closed_at"):
        p[col] = _times(p[col]).to_numpy()
    return p


def _streets(store: Store, p: pd.DataFrame) -> pd.Series:
    """Each case's street: its grid cell's street office, else its zone's first road."""
    grid = store.read("grid") if store.count("grid") else pd.DataFrame(columns=["code", "street"])
    office = p["grid_code"].map(dict(zip(grid["code"], grid["street"])))
    zones = store.read("zones").drop_duplicates("code", keep="last")
    road = p["zone_code"].map({c: (split_names(s) or [None])[0] for c, s in zip(zones["code"], zones["street"])})
    return office.astype(object).fillna(road).fillna(UNKNOWN)  # all-NaN without a grid


def _evaluated(rows: list[dict]) -> pd.DataFrame:
    """Evaluation rows as the bulletin shows them: every figure as people read it (— for none)."""
    return pd.DataFrame([{c: cell(c, r.get(c)) for c in RANK_KEYS} for r in rows], columns=list(RANK_KEYS))


def _counts(values: pd.Series, label: str) -> pd.DataFrame:
    out = values.value_counts().rename_axis(label).reset_index(name="cases")
    return out.sort_values(["cases", label], ascending=[False, True]).reset_index(drop=True)


def _by_day(reported_at: pd.Series, period: Period, tz) -> pd.DataFrame:
    days = pd.date_range(period.start.tz_convert(tz).date(), periods=(period.end - period.start).days, freq="D")
    counts = reported_at.dt.tz_convert(tz).dt.date.value_counts()
    return pd.DataFrame({"day": [d.date() for d in days], "cases": [int(counts.get(d.date(), 0)) for d in days]})


def _by_street(streets: pd.Series, due: pd.Series, on_time: pd.Series) -> pd.DataFrame:
    t = pd.DataFrame({"street": streets, "due": due, "on_time": on_time & due})
    t = t[t["due"]].groupby("street")[["due", "on_time"]].sum().reset_index()
    t["rate_value"] = t["on_time"] / t["due"]
    t["rate"] = [_rate(a, b) for a, b in zip(t["on_time"], t["due"])]
    return t.sort_values(["rate_value", "street"], ascending=[False, True]).reset_index(drop=True)


def _overdue(p: pd.DataFrame, late: pd.Series, names: dict, rules: Rules, period: Period) -> pd.DataFrame:
    """Cases due in the month and not closed by their deadline, longest overdue first."""
    o = p[late]
    until = o["closed_at"].fillna(period.end)
    tz = rules.tz
    out = pd.DataFrame({
        "problem_id": o["problem_id"].to_numpy(),
        "category": [_category(rules, c) for c in o["category"]],
        "unit": [names.get(u, u or UNKNOWN) for u in o["unit_id"]],
        "deadline": [t.tz_convert(tz).strftime("%Y-%m-%d %H:%M") for t in o["target_at"]],
        "closed": [t.tz_convert(tz).strftime("%Y-%m-%d %H:%M") if pd.notna(t) else "未结案" for t in o["closed_at"]],
        "days": ((until - o["target_at"]).dt.total_seconds() / 86400).round(1).to_numpy()})
    return out.sort_values(["days", "problem_id"], ascending=[False, True]).reset_index(drop=True)


def _category(rules: Rules, code) -> str:
    cat = rules.category(code)
    return f"{cat.name}（{code}）" if cat else str(code or UNKNOWN)


def _sanctions(store: Store, label: str, tz) -> pd.DataFrame:
    """The month's 奖惩 by the rules of inspection.toml, computed (not saved: `zonemap sanctions`
    keeps the ledger); rewards first, then fines, largest first."""
    from .inspections import sanctions

    rows = sanctions(store, label, save=False, tz=tz)["rows"]
    cols = ["unit", "kind", "amount", "reason"]
    if not rows:
        return pd.DataFrame(columns=cols)
    s = pd.DataFrame(rows).sort_values(["kind", "amount", "unit_id"], ascending=[False, False, True])
    return pd.DataFrame({"unit": s["name"].fillna(s["unit_id"]).to_numpy(),
                         "kind": ["奖励" if k == "reward" else "处罚" if k == "fine" else k for k in s["kind"]],
                         "amount": [int(a) if float(a).is_integer() else a for a in s["amount"]],  # 500 yuan, not 500.0
                         "reason": s["reason"].fillna("").to_numpy()})


def month_figures(store: Store, label: str, rules: Rules | None = None) -> Month:
    rules = rules or Rules()
    period = month_period(label, rules.tz)
    p = _cases(store)
    reported = (p["reported_at"] >= period.start) & (p["reported_at"] < period.end)
    due = (p["target_at"] >= period.start) & (p["target_at"] < period.end)
    on_time = p["closed_at"].notna() & (p["closed_at"] <= p["target_at"])
    if not (reported.any() or due.any()):
        raise NotFound(f"no case was reported or due in {label}: nothing to report; the cases run from "
                       f"{_span(p, rules.tz)}")
    units = store.read("units").drop_duplicates("unit_id")
    names = dict(zip(units["unit_id"], units["name"]))
    streets = _streets(store, p)
    month = p[reported]
    n_due, n_on_time = int(due.sum()), int((due & on_time).sum())
    summary = [("本月立案数", f"{int(reported.sum())}"), ("本月应结案数", f"{n_due}"),
               ("按期结案数", f"{n_on_time}"), ("按期结案率", _rate(n_on_time, n_due)),
               ("超期案件数", f"{n_due - n_on_time}"),
               ("本月结案数", f"{int(((p['closed_at'] >= period.start) & (p['closed_at'] < period.end)).sum())}")]
    located = month[~month.get("location_placeholder", pd.Series(False, index=month.index)).fillna(False).astype(bool)]
    units_eval = evaluate(store, label, by="unit", tz=rules.tz)
    return Month(period=period, summary=summary,
                 ranking=_evaluated(units_eval["rows"]),
                 departments=_evaluated(evaluate(store, label, by="department", tz=rules.tz)["rows"]),
                 red=_evaluated(units_eval["red"]), black=_evaluated(units_eval["black"]),
                 formula=units_eval["formula_version"],
                 by_category=_counts(month["category"].map(lambda c: _category(rules, c)), "category"),
                 by_day=_by_day(month["reported_at"], period, rules.tz),
                 by_street=_by_street(streets, due, on_time),
                 overdue=_overdue(p, due & ~on_time, names, rules, period),
                 sanctions=_sanctions(store, label, rules.tz),
                 points=gpd.GeoDataFrame(located, geometry="geometry", crs="EPSG:4326"))


def _span(p: pd.DataFrame, tz) -> str:
    t = p["reported_at"].dropna()
    if t.empty:
        return "(none yet)"
    return f"{t.min().tz_convert(tz):%Y-%m} to {t.max().tz_convert(tz):%Y-%m}"


# ---- charts and the map --------------------------------------------------------------------

def _bar_chart(labels, values, title: str, *, horizontal: bool = False, percent: bool = False) -> str:
    fig = printing.figure(17, 7 if not horizontal else max(5, 0.55 * len(labels) + 2))
    ax = fig.add_subplot()
    if horizontal:
        ax.barh(range(len(labels)), values, color="#3b6ea5")
        ax.set_yticks(range(len(labels)), [str(v) for v in labels], fontsize=7)
        ax.invert_yaxis()
        if percent:
            ax.set_xlim(0, 1)
            ax.xaxis.set_major_formatter("{x:.0%}")
    else:
        ax.bar(range(len(labels)), values, color="#3b6ea5")
        ax.set_xticks(range(len(labels)), [str(v) for v in labels], fontsize=6, rotation=90)
    for t in ax.get_yticklabels() + ax.get_xticklabels():
        t.set_parse_math(False)  # names from the data are words, not TeX
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x" if horizontal else "y", alpha=0.3)
    return printing.png_data_uri(fig, dpi=160)


def charts(m: Month) -> dict:
    top = m.by_category.head(12)
    return {
        "category": _bar_chart(top["category"], top["cases"], "本月案件数（按类别，前 12 类）", horizontal=True),
        "day": _bar_chart([d.day for d in m.by_day["day"]], m.by_day["cases"], "本月案件数（按日）"),
        "street": _bar_chart(m.by_street["street"], m.by_street["rate_value"], "按期结案率（按街道）",
                             horizontal=True, percent=True) if not m.by_street.empty else None,
    }


HOT_LEVELS = (("hot99", "99", "#b30000"), ("hot95", "95", "#e34a33"), ("hot90", "90", "#fdbb84"))


def hot_cells(store: Store, period: Period, tz) -> gpd.GeoDataFrame:
    """The month's significant Getis–Ord Gi* hot cells (EPSG:4326, `spot` hot99/hot95/hot90)."""
    from .hotspots import hotspots

    last = (period.end - pd.Timedelta(seconds=1)).tz_convert(tz).date()
    first = period.start.tz_convert(tz).date()
    found = hotspots(store, "gi", since=first.isoformat(), until=last.isoformat(), tz=tz)
    shown = found.shown
    if shown is None or shown.empty:
        return gpd.GeoDataFrame({"spot": []}, geometry=[], crs="EPSG:4326")
    return shown[shown["spot"].isin([h for h, _, _ in HOT_LEVELS])]


def hot_legend(cells: gpd.GeoDataFrame) -> list[dict]:
    """One row per confidence level: its colour and how many hot cells reached it."""
    counts = cells["spot"].value_counts()
    return [{"label": f"{level}% 置信热点", "color": color, "cells": int(counts.get(spot, 0))}
            for spot, level, color in HOT_LEVELS]


def hotspot_map(store: Store, points: gpd.GeoDataFrame, cells: gpd.GeoDataFrame) -> str | None:
    """The month's cases as dots, the significant Gi* hot cells over them coloured by level
    (99/95/90 %), over the roads and buildings."""
    from matplotlib.patches import Patch

    if points.empty:
        return None
    frame = pd.concat([points[["geometry"]], cells[["geometry"]]]) if len(cells) else points[["geometry"]]
    base = printing.Basemap.read(store, gpd.GeoDataFrame(frame, geometry="geometry", crs="EPSG:4326"),
                                 margin_m=100)
    xy = points.to_crs(base.crs).geometry
    box = printing.view_box(pd.concat([xy, cells.to_crs(base.crs).geometry]) if len(cells) else xy,
                            pad=0.1, min_m=400)
    fig = printing.figure(17, 12)
    ax = fig.add_subplot()
    osm = printing.draw_base(ax, base, box)
    handles = []
    for spot, level, color in HOT_LEVELS:
        mine = cells[cells["spot"] == spot]
        if len(mine):
            mine.to_crs(base.crs).plot(ax=ax, color=color, alpha=0.6, edgecolor="#7f0000", linewidth=0.4,
                                       zorder=4)
        handles.append(Patch(facecolor=color, edgecolor="#7f0000", alpha=0.6,
                             label=f"热点 {level}%（{len(mine)} 格）"))
    ax.scatter(xy.x, xy.y, s=3, color="#1f3b73", alpha=0.6, zorder=5, linewidths=0)
    ax.legend(handles=handles, loc="upper left", fontsize=7, title="Gi* 热点（置信度）", title_fontsize=7,
              framealpha=0.85)
    printing.finish_map(ax, box, base.crs, osm)
    return printing.png_data_uri(fig)


# ---- the documents ------------------------------------------------------------------------

# the evaluation's columns the rankings show, with their Chinese headers
RANK_COLUMNS = (("rank", "名次"), ("name", "责任单位"), ("filed", "立案数"), ("due", "应结案数"),
                ("closed", "结案数"), ("on_time_rate", "按期结案率"), ("rework_rate", "返工率"),
                ("score", "综合指标值"), ("grade", "等级"), ("rank_change", "名次变化"))
RANK_KEYS = tuple(k for k, _ in RANK_COLUMNS)
DEPARTMENT_COLUMNS = (("rank", "名次"), ("name", "部门"), *RANK_COLUMNS[2:])
TABLES = {  # XLSX sheet → (Month attribute, columns and their Chinese headers)
    "排名": ("ranking", RANK_COLUMNS),
    "部门排名": ("departments", DEPARTMENT_COLUMNS),
    "按类别": ("by_category", (("category", "类别"), ("cases", "案件数"))),
    "按日": ("by_day", (("day", "日期"), ("cases", "案件数"))),
    "按街道": ("by_street", (("street", "街道"), ("due", "应结案数"), ("on_time", "按期结案数"),
                           ("rate", "按期结案率"))),
    "超期案件": ("overdue", (("problem_id", "案卷号"), ("category", "类别"), ("unit", "责任单位"),
                          ("deadline", "处置时限"), ("closed", "结案时间"), ("days", "超期天数"))),
    "奖惩": ("sanctions", (("unit", "责任单位"), ("kind", "奖惩"), ("amount", "金额（元）"), ("reason", "事由"))),
}


def _rows(frame: pd.DataFrame, columns) -> list[list]:
    return [[_plain(v) for v in row] for row in frame[[c for c, _ in columns]].itertuples(index=False)]


def _plain(v):
    if isinstance(v, np.generic):
        return v.item()
    return "" if v is None or (isinstance(v, float) and np.isnan(v)) else v


def _table(frame: pd.DataFrame, columns) -> dict:
    return {"header": [h for _, h in columns], "rows": _rows(frame, columns)}


def write_bulletin(store: Store, label: str, out) -> dict:
    """The bulletin of city month `label` (YYYY-MM) to `out`: .pdf, .html or .xlsx."""
    kind = printing.output_kind(out, ("pdf", "html", "xlsx"))
    if kind != "xlsx":
        printing.cjk_font()
    m = month_figures(store, label)
    if kind == "xlsx":
        _write_xlsx(m, Path(out))
        pages = 1
    else:
        cells = hot_cells(store, m.period, Rules().tz)
        html = printing.render_html(
            "bulletin.html", title=f"城市管理月度通报（{label}）", period=label, summary=m.summary,
            best=_table(m.red, RANK_COLUMNS), worst=_table(m.black, RANK_COLUMNS) if len(m.black) else None,
            ranking=_table(m.ranking, RANK_COLUMNS), departments=_table(m.departments, DEPARTMENT_COLUMNS),
            formula=m.formula, map=hotspot_map(store, m.points, cells), legend=hot_legend(cells),
            charts=charts(m),
            overdue=_table(m.overdue, TABLES["超期案件"][1]), sanctions=_table(m.sanctions, TABLES["奖惩"][1]),
            made=dt.datetime.now(Rules().tz).strftime("%Y-%m-%d %H:%M"))
        pages = printing.write_document(html, out)
    return {"out": str(out), "format": kind, "period": label, "pages": pages,
            "cases": int(dict(m.summary)["本月立案数"]), "units_ranked": len(m.ranking), "overdue": len(m.overdue)}


def _write_xlsx(m: Month, out: Path) -> None:
    """One sheet per table, Chinese headers, frozen header row. Text is written as text
    (write_string), so a unit named "=HYPERLINK(…)" stays a name, never a formula."""
    import xlsxwriter

    out.parent.mkdir(parents=True, exist_ok=True)
    with xlsxwriter.Workbook(str(out)) as book:
        bold = book.add_format({"bold": True, "bg_color": "#F0F0F0"})
        sheet = book.add_worksheet("概况")
        sheet.write_string(0, 0, "月份", bold)
        sheet.write_string(0, 1, m.period.label)
        for r, (k, v) in enumerate(m.summary, start=1):
            sheet.write_string(r, 0, k, bold)
            sheet.write_string(r, 1, v)
        sheet.set_column(0, 1, 16)
        for name, (attr, columns) in TABLES.items():
            _sheet(book, name, _table(getattr(m, attr), columns), bold)


def _sheet(book, name: str, table: dict, bold) -> None:
    sheet = book.add_worksheet(name)
    for c, h in enumerate(table["header"]):
        sheet.write_string(0, c, h, bold)
        sheet.set_column(c, c, max(10, 2 * len(h) + 2))
    for r, row in enumerate(table["rows"], start=1):
        for c, v in enumerate(row):
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                sheet.write_number(r, c, v)
            else:
                sheet.write_string(r, c, str(v))
    sheet.freeze_panes(1, 0)
    if table["rows"]:
        sheet.autofilter(0, 0, len(table["rows"]), len(table["header"]) - 1)
