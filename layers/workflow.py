"""The case workflow as data: states, who may move a case from which state to which, the
limits of each stage, duplicate windows and category routing rules (rules/workflow.toml).

States follow domain.md: reported → (verifying, for public reports) → filed → dispatched →
processing → fed_back → checking → closed, with the side states returned (re-dispatch),
extended, shelved (挂账), rework (check failed, back to processing, counted) and voided.
A duplicate report is not a case: it is kept as `linked` to the case it repeats."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .deadlines import UNITS, Category, rule_file
from .errors import InputError

STATES = ("reported", "verifying", "filed", "dispatched", "processing", "fed_back", "checking",
          "closed", "returned", "extended", "shelved", "rework", "voided")
LINKED = "linked"
FINAL = ("closed", "voided")
OPEN = tuple(s for s in STATES if s not in FINAL)
STATE_ZH = {"reported": "已上报", "verifying": "待核实", "filed": "已立案", "dispatched": "已派遣",
            "processing": "处置中", "fed_back": "已反馈", "checking": "核查中", "closed": "已结案",
            "returned": "已回退", "extended": "申请延期", "shelved": "已挂账", "rework": "返工",
            "voided": "已作废", LINKED: "重复(已关联)"}
ROLES = ("public", "inspector", "dispatcher", "unit", "planner", "admin")
ROLE_ZH = {"public": "公众", "inspector": "监督员/网格员", "dispatcher": "派遣员", "unit": "责任单位",
           "planner": "规划编辑", "admin": "管理员"}
# who may report: everyone but a unit answering its own cases and a planner drawing zones
REPORTERS = ("public", "inspector", "dispatcher", "admin")


@dataclass(frozen=True)
class Move:
    action: str
    sources: tuple[str, ...]
    target: str
    roles: tuple[str, ...]
    zh: str


MOVES: tuple[Move, ...] = (
    Move("verify", ("verifying",), "filed", ("inspector", "admin"), "核实立案"),
    Move("file", ("reported",), "filed", ("inspector", "dispatcher", "admin"), "立案"),
    Move("void", ("verifying",), "voided", ("inspector", "dispatcher", "admin"), "核实不属实,作废"),
    Move("void", ("reported", "filed", "returned"), "voided", ("dispatcher", "admin"), "作废"),
    Move("dispatch", ("filed", "returned"), "dispatched", ("dispatcher", "admin"), "派遣"),
    Move("accept", ("dispatched", "rework"), "processing", ("unit", "admin"), "签收处置"),
    Move("return", ("dispatched",), "returned", ("unit", "admin"), "回退"),
    Move("extend", ("processing",), "extended", ("unit", "admin"), "申请延期"),
    Move("approve_extension", ("extended",), "processing", ("dispatcher", "admin"), "批准延期"),
    Move("refuse_extension", ("extended",), "processing", ("dispatcher", "admin"), "驳回延期"),
    Move("shelve", ("processing",), "shelved", ("dispatcher", "admin"), "挂账"),
    Move("resume", ("shelved",), "processing", ("dispatcher", "admin"), "挂账恢复"),
    Move("feed_back", ("processing",), "fed_back", ("unit", "admin"), "处置反馈"),
    Move("check", ("fed_back",), "checking", ("inspector", "admin"), "核查"),
    Move("close", ("checking",), "closed", ("inspector", "dispatcher", "admin"), "核查通过,结案"),
    Move("rework", ("checking",), "rework", ("inspector", "admin"), "核查不通过,返工"),
)
ACTIONS = tuple(dict.fromkeys(m.action for m in MOVES))


def find_move(action: str, status: str) -> Move | None:
    return next((m for m in MOVES if m.action == action and status in m.sources), None)


def moves_from(status: str) -> list[Move]:
    return [m for m in MOVES if status in m.sources]


@dataclass(frozen=True)
class Limit:
    amount: float
    unit: str


@dataclass(frozen=True)
class CategoryRule:
    name: str
    categories: tuple[str, ...]
    near_kind: str | None = None
    within_m: float = 50.0
    unit_id: str | None = None
    unit_name: str | None = None

    def matches(self, code: str | None) -> bool:
        return bool(code) and any(str(code).startswith(p) for p in self.categories)


@dataclass(frozen=True)
class Workflow:
    stages: dict[str, Limit]
    default_limit: Limit
    dup_distance_m: float
    dup_window_h: float
    dup_by_category: dict[str, tuple[float, float]] = field(default_factory=dict)
    category_rules: tuple[CategoryRule, ...] = ()
    timezone: str = "Asia/Shanghai"
    stages_urgent: dict[str, Limit] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path | None = None) -> Workflow:
        path = Path(path or rule_file("workflow.toml"))
        try:
            d = tomllib.loads(path.read_text("utf-8"))
            stages = {k: _limit(v, f"[stages] {k}") for k, v in d.get("stages", {}).items()}
            urgent = {k: _limit(v, f"[stages_urgent] {k}") for k, v in d.get("stages_urgent", {}).items()}
            bad = [k for k in [*stages, *urgent] if k not in STATES]
            if bad:
                raise InputError(f"[stages] {bad[0]} is not a state; the states are {', '.join(STATES)}")
            dup = d.get("duplicates", {})
            by_cat = {str(k): (float(v.get("distance_m", dup.get("distance_m", 30))),
                               float(v.get("window_hours", dup.get("window_hours", 24))))
                      for k, v in dup.get("by_category", {}).items()}
            rules = tuple(CategoryRule(r["name"], tuple(map(str, r["categories"])), r.get("near_kind"),
                                       float(r.get("within_m", 50)), r.get("unit_id"), r.get("unit_name"))
                          for r in d.get("category_rules", []))
            for r in rules:
                if bool(r.near_kind) == bool(r.unit_id):
                    raise InputError(f"category rule {r.name!r}: give either near_kind or unit_id")
            return cls(stages, _limit(d.get("default_limit", {"limit": 2, "unit": "working_days"}),
                                      "[default_limit]"),
                       float(dup.get("distance_m", 30)), float(dup.get("window_hours", 24)), by_cat, rules,
                       _zone(d.get("timezone", "Asia/Shanghai")), urgent)
        except (tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{path}: {exc}; see the comments in layers/rules/workflow.toml") from None

    def duplicate_window(self, code: str | None) -> tuple[float, float]:
        """(distance in metres, window in hours) for a category: its longest matching key."""
        keys = [k for k in self.dup_by_category if code and str(code).startswith(k)]
        if keys:
            return self.dup_by_category[max(keys, key=len)]
        return self.dup_distance_m, self.dup_window_h

    def disposal_limit(self, category: Category | None) -> Limit:
        if category is None:
            return self.default_limit
        return Limit(category.limit, category.limit_unit)


def _zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InputError(f"timezone {name!r} is not an IANA time zone (e.g. Asia/Shanghai)") from None
    return name


def _limit(v: dict, where: str) -> Limit:
    unit = v.get("unit")
    if unit not in UNITS:
        raise InputError(f"{where}: unit {unit!r}; use one of {', '.join(UNITS)}")
    amount = float(v["limit"])
    if amount <= 0:
        raise InputError(f"{where}: limit must be above 0")
    return Limit(amount, unit)
