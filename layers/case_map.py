"""What the inspector's map asks of the cases, at city scale: the cases of a view either as
points (few enough to draw and cluster in the browser) or as counts per cell with their
lights (a city's million reports, grouped by the store in one query), and today's list: the
red and yellow cases nearest a place, with the way there.

Everything takes the filters of `cases.find` and the user's scope (a unit sees its own
cases only)."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pandas as pd

from .cases import LIGHTS, Rules, case_queries, case_rows, case_view, find, unit_names_of, utc_now
from .errors import InputError
from .store import Store
from .users import User

CELL_PX = 80  # a cell of the counted map is about this many screen pixels wide
TILE_PX = 256
POINTS_MAX = 2000  # a view with more cases than this gets counts per cell, not points
DUE_MAX = 5000  # the most red and yellow cases today's list sorts by distance
COMPASS_ZH = ("北", "东北", "东", "东南", "南", "西南", "西", "西北")
COMPASS_EN = ("N", "NE", "E", "SE", "S", "SW", "W", "NW")


def cell_degrees(zoom: int) -> float:
    """The side in degrees of a cell about CELL_PX wide at web-map zoom `zoom`."""
    if not 0 <= zoom <= 22:
        raise InputError(f"zoom is 0–22, not {zoom}")
    return CELL_PX * 360.0 / (TILE_PX * 2 ** zoom)


_FAR = dt.datetime(2200, 1, 1, tzinfo=dt.UTC)  # later than any light time: "has one at all"


def _light_flags(now: dt.datetime) -> dict:
    # a case is red when its red time has passed, yellow when its yellow time has; no times: no light
    return {"past_yellow": ("light_yellow_at", now),
            "past_red": ("light_red_after", now - dt.timedelta(microseconds=1)),
            "has_light": ("light_yellow_at", _FAR)}


def view(store: Store, user: User, bbox, zoom: int, *, filters: dict | None = None,
         points_max: int = POINTS_MAX, now: dt.datetime | None = None, rules: Rules | None = None) -> dict:
    """The cases of the view `bbox` at `zoom` matching `filters` (find's): {"total", "mode":
    "points", "points": [[problem_id, lon, lat, light, status, category], …]} when there are at
    most `points_max`, else {"total", "mode": "cells", "size": degrees, "cells": [{lon, lat,
    n, red, yellow, green, none}, …]} (lon/lat: the mean of the cell's cases). Either way one
    answer a phone can take for a whole city."""
    rules, now = rules or Rules(), now or utc_now()
    queries = case_queries(user, bbox=bbox, rules=rules, now=now, **(filters or {}))
    total = sum(store.count("problems", **q) for q in queries)
    if total <= points_max:
        frame, _ = find(store, user, bbox=bbox, order=None, rules=rules, now=now, **(filters or {}))
        points = [[c["problem_id"], c["lon"], c["lat"], rules.case_light(c, now), c["status"], c["category"]]
                  for c in case_rows(frame) if c["lon"] is not None and not c.get("location_placeholder")]
        return {"total": total, "mode": "points", "points": points}
    size = cell_degrees(zoom)
    parts = [store.cells("problems", size, flags=_light_flags(now), **q) for q in queries]
    counted = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    return {"total": total, "mode": "cells", "size": size, "cells": _cells(counted)}


def _cells(counted: pd.DataFrame) -> list[dict]:
    if counted.empty:
        return []
    light = np.select([counted["has_light"].eq(0), counted["past_red"].eq(1), counted["past_yellow"].eq(1)],
                      ["none", "red", "yellow"], "green")
    counted = counted.assign(light=light, wx=counted["lon"] * counted["n"], wy=counted["lat"] * counted["n"])
    by = counted.pivot_table(index=["ix", "iy"], columns="light", values="n", aggfunc="sum", fill_value=0)
    sums = counted.groupby(["ix", "iy"])[["n", "wx", "wy"]].sum()
    out = []
    for key, row in sums.iterrows():
        lights = {k: int(by.loc[key, k]) if k in by.columns else 0 for k in (*LIGHTS, "none")}
        out.append({"lon": round(row["wx"] / row["n"], 6), "lat": round(row["wy"] / row["n"], 6),
                    "n": int(row["n"]), **lights})
    return sorted(out, key=lambda c: -c["n"])


def _metres_and_bearing(lon0: float, lat0: float, lon: np.ndarray, lat: np.ndarray) -> tuple:
    """Great-circle distance in metres and initial bearing in degrees from (lon0, lat0)."""
    p0, p1 = math.radians(lat0), np.radians(lat)
    dl = np.radians(lon - lon0)
    h = np.sin((p1 - p0) / 2) ** 2 + math.cos(p0) * np.cos(p1) * np.sin(dl / 2) ** 2
    metres = 2 * 6371008.8 * np.arcsin(np.sqrt(h))
    bearing = np.degrees(np.arctan2(np.sin(dl) * np.cos(p1),
                                    math.cos(p0) * np.sin(p1) - math.sin(p0) * np.cos(p1) * np.cos(dl))) % 360
    return metres, bearing


def due_near(store: Store, user: User, lon: float, lat: float, *, filters: dict | None = None,
             page: int = 1, per_page: int = 10, lang: str = "zh", now: dt.datetime | None = None,
             rules: Rules | None = None) -> dict:
    """Today's list: the open cases that are overdue (red) or near their deadline (yellow),
    nearest to (lon, lat) first, one page at a time. Each case as the case desk shows it, plus
    `distance_m`, `bearing` (degrees from north), `direction` (北, 东北… or N, NE…) and `geo`,
    a geo: address (RFC 5870) a phone opens in its own map app for the way there."""
    if not (math.isfinite(lon) and math.isfinite(lat) and -180 <= lon <= 180 and -90 <= lat <= 90):
        raise InputError("near must be lon,lat in degrees (WGS 84), e.g. near=118.7835,32.0418")
    rules, now = rules or Rules(), now or utc_now()
    filters = {k: v for k, v in (filters or {}).items() if k != "light"}
    frame, total = find(store, user, light="yellow,red", order=None, limit=DUE_MAX, rules=rules, now=now, **filters)
    rows = [r for r in case_rows(frame) if r["lon"] is not None and not r.get("location_placeholder")]
    if not rows:
        return {"total": 0, "page": page, "per_page": per_page, "cut": total > DUE_MAX, "cases": []}
    metres, bearing = _metres_and_bearing(lon, lat, np.array([r["lon"] for r in rows]),
                                          np.array([r["lat"] for r in rows]))
    rank = np.lexsort((np.array([r["problem_id"] for r in rows]), metres))
    start = (page - 1) * per_page
    chosen = [int(i) for i in rank[start:start + per_page]]
    names = unit_names_of(store, [rows[i]["unit_id"] for i in chosen])
    compass = COMPASS_ZH if lang == "zh" else COMPASS_EN
    cases = []
    for i in chosen:
        c = case_view(rows[i], user, rules, now, names)
        c |= {"distance_m": round(float(metres[i]), 1), "bearing": round(float(bearing[i])),
              "direction": compass[int((bearing[i] + 22.5) // 45) % 8],
              "geo": f"geo:{rows[i]['lat']:.6f},{rows[i]['lon']:.6f}"}
        cases.append(c)
    return {"total": len(rows), "page": page, "per_page": per_page, "cut": total > DUE_MAX, "cases": cases}


__all__ = ["POINTS_MAX", "cell_degrees", "due_near", "view"]
