"""Evaluation (评): the period's counts and rates per subject, the 综合指标值 and its grade from
the versioned formula of layers/rules/evaluation.toml, and the ranking with its change from
the previous period (红黑榜).

Definitions (domain.md "Evaluation", domain-reference.md §9), for a period [start, end) in
city time:
- 立案数 (filed): cases reported in the period, not linked duplicates, not voided, past verification.
- 应结案数 (due): cases whose disposal deadline (target_at) falls in the period, plus those due
  before it and still open at its start. Voided and linked ones are never due.
- 结案数 (closed): due cases closed before the period's end; 按期 (on time) when closed by their
  deadline (the same test as layers.cases.on_time_rates: closed_at ≤ target_at).
- 结案率 = closed / due; 按期结案率 = on time / due; 延期率 = due cases with an approved extension
  (an approve_extension step before the end) / due.
- 返工率 = cases reworked in the period / cases fed back in the period (a rework always follows a
  feed-back, so a reworked case counts as fed back).
- repeat rate: filed cases whose zone had a case of the same category in the N days before /
  filed; density: filed per 1,000 m² and per 100 m of frontage; inspection pass rate; 巡查率.
A rate without a denominator is None (shown "—"), never a division by zero."""

from __future__ import annotations

import csv
import datetime as dt
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from .deadlines import rule_file
from .errors import InputError
from .store import Store

SUBJECTS = {"department": "department", "unit": "unit_id", "zone": "zone_code", "grid": "grid_code",
            "street": "street", "community": "community"}
INDICATORS = ("filed", "close_rate", "on_time_rate", "rework_rate", "extension_rate", "repeat_rate",
              "inspection_pass_rate", "patrol_rate")
SCORES = ("rate", "bad_rate", "bands")
DASH = "—"
NOT_FILED = ("linked", "voided", "reported", "verifying")

# Column labels of a table people read (XLSX/CSV/text), Chinese by default.
LABELS = {
    "rank": ("排名", "rank"), "subject": ("对象", "subject"), "name": ("名称", "name"),
    "filed": ("立案数", "filed"), "due": ("应结案数", "due"), "closed": ("结案数", "closed"),
    "on_time": ("按期结案数", "closed on time"), "close_rate": ("结案率", "close rate"),
    "on_time_rate": ("按期结案率", "on-time rate"), "fed_back": ("反馈数", "fed back"),
    "reworked": ("返工数", "reworked"), "rework_rate": ("返工率", "rework rate"),
    "extended": ("延期数", "extended"), "extension_rate": ("延期率", "extension rate"),
    "per_1000m2": ("每千平方米问题数", "per 1,000 m²"), "per_100m": ("每百米临街问题数", "per 100 m frontage"),
    "repeat_rate": ("复发率", "repeat rate"), "inspections": ("检查次数", "inspections"),
    "inspection_pass_rate": ("检查合格率", "inspection pass rate"), "patrol_rate": ("巡查率", "patrol rate"),
    "score": ("综合指标值", "composite score"), "grade": ("等级", "grade"),
    "prev_rank": ("上期排名", "previous rank"), "rank_change": ("名次变化", "rank change"),
    "score_change": ("指标值变化", "score change"),
}
RATES = ("close_rate", "on_time_rate", "rework_rate", "extension_rate", "repeat_rate", "inspection_pass_rate",
         "patrol_rate")


# ---- the formula --------------------------------------------------------------------------

@dataclass(frozen=True)
class Term:
    indicator: str
    score: str
    weight: float


@dataclass(frozen=True)
class Formula:
    version: str
    terms: tuple[Term, ...]
    bands: dict[str, tuple[tuple[float, ...], tuple[float, ...], float]]
    grades: tuple[tuple[str, float], ...]  # (letter, lower bound), best first; the last letter below all
    missing: str = "skip"
    min_weight: float = 0.5
    list_size: int = 3
    repeat_days: float = 30
    patrol_within_m: float = 15
    patrol_target: float = 0.95
    route_within_m: float = 30
    title: str = ""

    def value(self, term: Term, v) -> float | None:
        """The 分值 (0–100) of one indicator value, None when the value is None."""
        if v is None:
            return None
        if term.score == "rate":
            return 100.0 * v
        if term.score == "bad_rate":
            return 100.0 * (1.0 - v)
        upper, scores, above = self.bands[term.indicator]
        return next((s for u, s in zip(upper, scores) if v <= u), above)

    def composite(self, values: dict) -> float | None:
        """综合指标值: the weighted sum of the terms' 分值; a term without a value is skipped and the
        others' weights scaled up ("skip") as long as they hold `min_weight` of the whole, or makes
        the whole value None ("none")."""
        got = [(t.weight, self.value(t, values.get(t.indicator))) for t in self.terms]
        have = [(w, s) for w, s in got if s is not None]
        if not have or (self.missing == "none" and len(have) < len(got)):
            return None
        if sum(w for w, _ in have) < self.min_weight * sum(w for w, _ in got) - 1e-9:
            return None
        return sum(w * s for w, s in have) / sum(w for w, _ in have)

    def grade(self, score: float | None) -> str | None:
        if score is None:
            return None
        for letter, low in self.grades[:-1]:
            if score >= low - 1e-9:
                return letter
        return self.grades[-1][0]


def _toml(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: no such rules file") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: not valid TOML ({exc})") from None


def _number(d: dict, key: str, where: str, default=None, low: float = 0, high: float | None = None) -> float:
    v = d.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v < low or (high is not None and v > high):
        bound = f"{low}–{high}" if high is not None else f"≥ {low}"
        raise InputError(f"{where}: {key} must be a number {bound} (got {v!r})")
    return float(v)


def load_formula(path: str | Path | None = None) -> Formula:
    """evaluation.toml (a city's own in $ZONEMAP_RULES, else ours), checked: unknown indicators,
    score kinds, weights and bands are refused with the file and the setting named."""
    path = Path(path or rule_file("evaluation.toml"))
    d = _toml(path)
    name = path.name
    if not isinstance(d.get("version"), str) or not d["version"].strip():
        raise InputError(f"{name}: give the formula a version = \"…\" (evaluations name it)")
    terms = []
    for i, t in enumerate(d.get("terms", []), 1):
        where = f"{name} [[terms]] #{i}"
        if t.get("indicator") not in INDICATORS:
            raise InputError(f"{where}: indicator {t.get('indicator')!r}; use one of {', '.join(INDICATORS)}")
        if t.get("score") not in SCORES:
            raise InputError(f"{where}: score {t.get('score')!r}; use one of {', '.join(SCORES)}")
        terms.append(Term(t["indicator"], t["score"], _number(t, "weight", where, high=100)))
    if not terms or sum(t.weight for t in terms) <= 0:
        raise InputError(f"{name}: give at least one [[terms]] with a positive weight")
    bands = {}
    for key, b in d.get("bands", {}).items():
        upper, scores = b.get("upper", []), b.get("score", [])
        if len(upper) != len(scores) or list(upper) != sorted(upper):
            raise InputError(f"{name} [bands.{key}]: upper and score must be lists of the same length, "
                             "upper ascending")
        bands[key] = (tuple(map(float, upper)), tuple(map(float, scores)),
                      _number(b, "above", f"{name} [bands.{key}]", 0, high=100))
    for t in terms:
        if t.score == "bands" and t.indicator not in bands:
            raise InputError(f"{name}: term {t.indicator} is scored by bands but there is no [bands.{t.indicator}]")
    grades = sorted(((k, _number(d.get("grades", {}), k, f"{name} [grades]", high=100))
                     for k in d.get("grades", {})), key=lambda kv: -kv[1])
    last = chr(ord(max((g for g, _ in grades), default="D")) + 1)
    if d.get("missing", "skip") not in ("skip", "none"):
        raise InputError(f"{name}: missing = {d['missing']!r}; use skip or none")
    sec = {k: d.get(k, {}) for k in ("ranking", "repeat", "patrol", "route")}
    return Formula(
        version=d["version"].strip(), terms=tuple(terms), bands=bands, grades=(*grades, (last, 0.0)),
        missing=d.get("missing", "skip"), min_weight=_number(d, "min_weight", name, 0.5, high=1),
        title=str(d.get("title", "")),
        list_size=int(_number(sec["ranking"], "list_size", f"{name} [ranking]", 3, high=100)),
        repeat_days=_number(sec["repeat"], "days", f"{name} [repeat]", 30, high=3650),
        patrol_within_m=_number(sec["patrol"], "within_m", f"{name} [patrol]", 15, high=1000),
        patrol_target=_number(sec["patrol"], "target", f"{name} [patrol]", 0.95, high=1),
        route_within_m=_number(sec["route"], "within_m", f"{name} [route]", 30, high=5000))


# ---- periods ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Period:
    label: str
    first: dt.date  # first day
    after: dt.date  # first day after it
    tz: ZoneInfo

    @property
    def start(self) -> pd.Timestamp:
        return pd.Timestamp(self.first).tz_localize(self.tz).tz_convert("UTC")

    @property
    def end(self) -> pd.Timestamp:
        return pd.Timestamp(self.after).tz_localize(self.tz).tz_convert("UTC")

    @property
    def last_day(self) -> dt.date:
        return self.after - dt.timedelta(days=1)

    def previous(self) -> Period:
        return parse_period(_shift(self.label, -1), self.tz)

    def contains(self, times: pd.Series) -> np.ndarray:
        t = pd.to_datetime(times, utc=True)
        return ((t >= self.start) & (t < self.end)).fillna(False).to_numpy(bool)


_MONTH = re.compile(r"(\d{4})-(\d{1,2})")
_QUARTER = re.compile(r"(\d{4})-?[Qq]([1-4])")
_YEAR = re.compile(r"\d{4}")


def _shift(label: str, n: int) -> str:
    if m := _MONTH.fullmatch(label):
        k = int(m[1]) * 12 + int(m[2]) - 1 + n
        return f"{k // 12:04d}-{k % 12 + 1:02d}"
    if m := _QUARTER.fullmatch(label):
        k = int(m[1]) * 4 + int(m[2]) - 1 + n
        return f"{k // 4:04d}-Q{k % 4 + 1}"
    return f"{int(label) + n:04d}"


def parse_period(text: str | None, tz: ZoneInfo, today: dt.date | None = None) -> Period:
    """YYYY-MM (a month), YYYY-Qn (a quarter) or YYYY (a year), in the city's time; None: the
    month before `today` (the city's date), the one a monthly evaluation is about."""
    if not text:
        today = today or dt.datetime.now(tz).date()
        first = today.replace(day=1) - dt.timedelta(days=1)
        text = f"{first.year:04d}-{first.month:02d}"
    text = str(text).strip()
    try:
        if m := _MONTH.fullmatch(text):
            first = dt.date(int(m[1]), int(m[2]), 1)
            label = f"{first.year:04d}-{first.month:02d}"
        elif m := _QUARTER.fullmatch(text):
            first = dt.date(int(m[1]), 3 * int(m[2]) - 2, 1)
            label = f"{first.year:04d}-Q{m[2]}"
        elif _YEAR.fullmatch(text):
            first, label = dt.date(int(text), 1, 1), text
        else:
            raise ValueError
        nxt = _shift(label, 1)
        after = (dt.date(int(nxt[:4]), 1, 1) if len(nxt) == 4 else
                 dt.date(int(nxt[:4]), 3 * int(nxt[-1]) - 2, 1) if "Q" in nxt else
                 dt.date(int(nxt[:4]), int(nxt[5:]), 1))
    except ValueError:
        raise InputError(f"period {text!r}: use YYYY-MM (a month), YYYY-Qn (a quarter) or YYYY") from None
    return Period(label, first, after, tz)


# ---- the indicators ----------------------------------------------------------------------

def _rate(num, den) -> float | None:
    return None if not den else float(num) / float(den)


def _grid_names(grid) -> pd.DataFrame:
    return pd.DataFrame({"street": grid["street"].to_numpy(), "community": grid["community"].to_numpy(),
                         "name": grid["name"].to_numpy()}, index=grid["code"].to_numpy())


def subject_of(frame: pd.DataFrame, by: str, grid: pd.DataFrame) -> pd.Series:
    """Each case's subject under `by` (street and community through its grid cell); "—" when
    the case has none."""
    if by in ("street", "community"):
        codes = frame["grid_code"]
        keys = codes.map(grid[by]) if len(grid) else pd.Series(None, index=frame.index, dtype=object)
    else:
        keys = frame[SUBJECTS[by]]
    return keys.where(keys.notna() & (keys.astype(str) != ""), DASH).astype(str)


@dataclass
class Data:
    """What an evaluation reads from the store, read once for the period and the one before."""
    problems: pd.DataFrame
    steps: pd.DataFrame
    inspections: pd.DataFrame
    grid: pd.DataFrame
    zones: pd.DataFrame
    units: dict = field(default_factory=dict)
    grid_geoms: object = None  # the grid cells' geometries, in grid's order

    @classmethod
    def read(cls, store: Store) -> Data:
        p = pd.DataFrame(store.read("problems").drop(columns="geometry", errors="ignore"))
        for c in ("reported_at", "target_at", "closed_at"):
            p[c] = pd.to_datetime(p[c], utc=True)
        steps = pd.DataFrame(store.read("case_steps"))
        steps["at"] = pd.to_datetime(steps["at"], utc=True)
        ins = pd.DataFrame(store.read("inspections"))
        ins["inspected_at"] = pd.to_datetime(ins["inspected_at"], utc=True)
        units = store.read("units")
        grid = store.read("grid")
        return cls(p, steps, ins, _grid_names(grid), store.read("zones"),
                   dict(zip(units["unit_id"], units["name"])), grid.geometry)


def _due(p: pd.DataFrame, period: Period) -> np.ndarray:
    live = ~p["status"].isin(["voided", "linked"]).to_numpy()
    target, closed = p["target_at"], p["closed_at"]
    in_period = period.contains(target)
    carried = ((target < period.start) & (closed.isna() | (closed >= period.start))).fillna(False).to_numpy(bool)
    return live & (in_period | carried)


def _repeats(p: pd.DataFrame, days: float) -> np.ndarray:
    """True for a case whose zone had a case of the same category in the `days` before it."""
    out = np.zeros(len(p), bool)
    ok = p["zone_code"].notna() & p["category"].notna() & p["reported_at"].notna() & (p["status"] != "linked")
    sub = p[ok].assign(_i=np.flatnonzero(ok.to_numpy())).sort_values("reported_at")
    gap = sub.groupby(["zone_code", "category"])["reported_at"].diff()
    hit = (gap <= pd.Timedelta(days=days)).fillna(False).to_numpy(bool)
    out[sub["_i"].to_numpy()[hit]] = True
    return out


def _step_cases(steps: pd.DataFrame, period: Period, mask) -> set:
    s = steps[period.contains(steps["at"]) & mask(steps)]
    return set(s["problem_id"])


def case_counts(data: Data, period: Period, by: str, formula: Formula) -> pd.DataFrame:
    """Per subject: filed, due, closed, on_time, fed_back, reworked, extended, repeats."""
    p = data.problems
    if p.empty:
        return pd.DataFrame(columns=["filed", "due", "closed", "on_time", "fed_back", "reworked", "extended",
                                     "repeats"])
    subj = subject_of(p, by, data.grid)
    filed = period.contains(p["reported_at"]) & ~p["status"].isin(NOT_FILED).to_numpy()
    due = _due(p, period)
    closed = due & (p["closed_at"] < period.end).fillna(False).to_numpy(bool)
    on_time = closed & (p["closed_at"] <= p["target_at"]).fillna(False).to_numpy(bool)
    st = data.steps
    reworked = _step_cases(st, period, lambda s: s["action"] == "rework")
    fed_back = _step_cases(st, period, lambda s: s["to_status"] == "fed_back") | reworked
    approved = set(st[(st["action"] == "approve_extension") & (st["at"] < period.end)]["problem_id"])
    ids = p["problem_id"]
    frame = pd.DataFrame({
        "subject": subj.to_numpy(), "filed": filed, "due": due, "closed": closed, "on_time": on_time,
        "fed_back": ids.isin(fed_back).to_numpy(), "reworked": ids.isin(reworked).to_numpy(),
        "extended": due & ids.isin(approved).to_numpy(),
        "repeats": filed & _repeats(p, formula.repeat_days)})
    counts = frame.groupby("subject").sum().astype(int)
    return counts[(counts > 0).any(axis=1)]


def _inspection_counts(data: Data, period: Period, by: str) -> pd.DataFrame:
    col = {"zone": "zone_code", "unit": "unit_id"}.get(by)
    ins = data.inspections
    if col is None or ins.empty:
        return pd.DataFrame(columns=["inspections", "passed"])
    ins = ins[period.contains(ins["inspected_at"]) & ins[col].notna().to_numpy()]
    return pd.DataFrame({"subject": ins[col].astype(str).to_numpy(),
                         "inspections": 1, "passed": ins["passed"].fillna(False).astype(bool).to_numpy()}
                        ).groupby("subject").sum().astype(int)


def _sizes(data: Data, period: Period, by: str) -> pd.DataFrame:
    """Area (m²) and frontage (m) per subject: zones in force on the period's last day for zones
    and units; the grid cells' own area for grid, community and street."""
    from .patrols import metric_area
    from .zones import current

    if by in ("zone", "unit") and not data.zones.empty:
        z = current(data.zones, period.last_day)
        key = z["code" if by == "zone" else "primary_unit"]
        return pd.DataFrame({"subject": key.astype(str).to_numpy(), "area": z["area_m2"].to_numpy(float),
                             "frontage": z["frontage_len_m"].fillna(0).to_numpy(float)}).groupby("subject").sum()
    if by in ("grid", "street", "community") and len(data.grid):
        area = metric_area(data.grid_geoms)
        key = data.grid.index.to_series() if by == "grid" else data.grid[by]
        return pd.DataFrame({"subject": key.astype(str).to_numpy(), "area": area, "frontage": 0.0}
                            ).groupby("subject").sum()
    return pd.DataFrame(columns=["area", "frontage"])


def indicators(data: Data, period: Period, by: str, formula: Formula, patrol: dict | None = None) -> pd.DataFrame:
    """One row per subject with every count and rate of the period (rates None without a
    denominator), its 综合指标值 and grade."""
    counts = case_counts(data, period, by, formula)
    ins = _inspection_counts(data, period, by)
    subjects = sorted(set(counts.index) | set(ins.index))
    counts = counts.reindex(subjects, fill_value=0)
    ins = ins.reindex(subjects, fill_value=0)
    sizes = _sizes(data, period, by)
    rows = []
    for s in subjects:
        c = counts.loc[s]
        area = float(sizes["area"].get(s, 0) or 0)
        front = float(sizes["frontage"].get(s, 0) or 0)
        row = {"subject": s, "name": _name(data, by, s), **{k: int(c[k]) for k in counts.columns},
               "close_rate": _rate(c["closed"], c["due"]), "on_time_rate": _rate(c["on_time"], c["due"]),
               "rework_rate": _rate(c["reworked"], c["fed_back"]),
               "extension_rate": _rate(c["extended"], c["due"]),
               "repeat_rate": _rate(c["repeats"], c["filed"]),
               "per_1000m2": c["filed"] / (area / 1000) if area > 0 else None,
               "per_100m": c["filed"] / (front / 100) if front > 0 else None,
               "inspections": int(ins.loc[s, "inspections"]),
               "inspection_pass_rate": _rate(ins.loc[s, "passed"], ins.loc[s, "inspections"]),
               "patrol_rate": (patrol or {}).get(s)}
        row["score"] = formula.composite(row)
        row["grade"] = formula.grade(row["score"])
        rows.append(row)
    return pd.DataFrame(rows)


def _name(data: Data, by: str, key: str) -> str:
    if by == "unit":
        return str(data.units.get(key) or key)
    if by == "grid" and key in data.grid.index:
        return str(data.grid.loc[key, "name"] or key)
    return key


def _ranked(table: pd.DataFrame) -> pd.DataFrame:
    """Rank 1 = the highest 综合指标值; ties share a rank; subjects without a value are unranked."""
    if table.empty:
        return table.assign(rank=pd.Series(dtype=object))
    score = pd.to_numeric(table["score"], errors="coerce").round(6)
    rank = score.rank(method="min", ascending=False)
    return table.assign(rank=[None if pd.isna(r) else int(r) for r in rank])


def evaluate(store: Store, period: str | None = None, by: str = "department", *, formula: Formula | None = None,
             tz: ZoneInfo | None = None, data: Data | None = None) -> dict:
    """The evaluation of `period` per subject `by`: rows ranked best first, each with its change
    from the previous period, the 红榜 (best) and 黑榜 (worst), the formula's version."""
    if by not in SUBJECTS:
        raise InputError(f"--by {by!r}: evaluate by one of {', '.join(SUBJECTS)}")
    from .cases import Rules
    from .patrols import coverage_by

    formula = formula or load_formula()
    tz = tz or Rules().tz
    per = parse_period(period, tz)
    prev = per.previous()
    data = data or Data.read(store)
    now = _ranked(indicators(data, per, by, formula, coverage_by(store, per, by, formula.patrol_within_m)))
    before = _ranked(indicators(data, prev, by, formula, coverage_by(store, prev, by, formula.patrol_within_m)))
    old = {r["subject"]: r for r in before.to_dict("records")}
    rows = []
    for r in now.to_dict("records"):
        o = old.get(r["subject"], {})
        r["rank"] = _int(r["rank"])
        r["prev_rank"], r["prev_score"] = _int(o.get("rank")), _plain(o.get("score"))
        r["rank_change"] = (r["prev_rank"] - r["rank"]) if r["rank"] and r["prev_rank"] else None
        r["score_change"] = (r["score"] - r["prev_score"]) if r["score"] is not None and \
            r["prev_score"] is not None else None
        rows.append({k: _plain(v) for k, v in r.items()})
    rows.sort(key=lambda r: (r["rank"] is None, r["rank"] or 0, r["subject"]))
    ranked = [r for r in rows if r["rank"] is not None]
    n = formula.list_size
    return {"period": per.label, "previous_period": prev.label, "by": by, "formula_version": formula.version,
            "start": per.start.isoformat(), "end": per.end.isoformat(), "time_zone": str(tz), "rows": rows,
            # 红榜 the best n; 黑榜 the worst n of those not on the 红榜 (a short list is not on both)
            "red": ranked[:n], "black": ranked[max(n, len(ranked) - n):][::-1]}


def _int(v) -> int | None:
    return None if v is None or pd.isna(v) else int(v)


def _plain(v):
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return None
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return v


# ---- showing it -------------------------------------------------------------------------

COLUMNS = ("rank", "subject", "name", "filed", "due", "closed", "on_time", "close_rate", "on_time_rate",
           "fed_back", "reworked", "rework_rate", "extended", "extension_rate", "per_1000m2", "per_100m",
           "repeat_rate", "inspections", "inspection_pass_rate", "patrol_rate", "score", "grade", "prev_rank",
           "rank_change", "score_change")


def cell(key: str, v):
    """A value as people read it: rates as percentages, None as —."""
    if v is None:
        return DASH
    if key in RATES:
        return f"{100 * v:.1f}%"
    if key in ("score", "score_change", "per_1000m2", "per_100m"):
        return f"{v:+.1f}" if key == "score_change" else f"{v:.2f}" if key.startswith("per") else f"{v:.1f}"
    if key == "rank_change":
        return f"{v:+d}" if v else "0"
    return str(v)


def header(lang: str = "zh") -> list[str]:
    i = 1 if lang == "en" else 0
    return [LABELS[c][i] for c in COLUMNS]


def table(result: dict) -> list[list[str]]:
    return [[cell(c, r.get(c)) for c in COLUMNS] for r in result["rows"]]


def text(result: dict, lang: str = "zh") -> str:
    """The ranking as a plain-text table, then the 红榜 and 黑榜."""
    cols = ("rank", "subject", "filed", "due", "closed", "close_rate", "on_time_rate", "rework_rate", "score",
            "grade", "rank_change")
    i = 1 if lang == "en" else 0
    lines = [f"{result['period']} · by {result['by']} · formula {result['formula_version']}",
             "  ".join(LABELS[c][i] for c in cols)]
    lines += ["  ".join(cell(c, r.get(c)) for c in cols) for r in result["rows"]]
    if not result["rows"]:
        lines.append("(no cases, inspections or patrols in the period)")
    for title, key in (("红榜", "red"), ("黑榜", "black")):
        lines.append(f"{title}: " + (", ".join(f"{r['name']} ({cell('score', r['score'])})" for r in result[key])
                                     or DASH))
    return "\n".join(lines)


def write(result: dict, path: str | Path, lang: str = "zh") -> Path:
    """The ranking as XLSX (frozen header, filters) or CSV (UTF-8 with BOM, so Excel shows Chinese)."""
    path = Path(path)
    rows = table(result)
    if path.suffix.lower() == ".csv":
        with open(path, "w", encoding="utf-8-sig", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(header(lang))
            w.writerows(rows)
        return path
    if path.suffix.lower() != ".xlsx":
        raise InputError(f"--out {path.name}: write .xlsx or .csv")
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = f"{result['period']} {result['by']}"[:31]
    ws.append(header(lang))
    for r in rows:
        ws.append(r)
    ws.freeze_panes = "A2"
    ws.auto_filter.ref = ws.dimensions
    ws.append([])
    ws.append([f"formula {result['formula_version']}", f"{result['start']} – {result['end']}"])
    wb.save(path)
    return path


__all__ = ["Data", "Formula", "Period", "evaluate", "indicators", "load_formula", "parse_period", "text", "write"]
