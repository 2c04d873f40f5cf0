"""Rule data (TOML files beside this module), loaded and validated into geo's dataclasses."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

from geo.carriageway import CurbRules
from geo.frontage import Profile

from ..errors import InputError

HERE = Path(__file__).resolve().parent
PROFILES = HERE / "profiles"
_CHOICES = {"depth_to": ("curb", "nonmotor_curb", "red_line"), "no_sidewalk": ("curb", "centreline"),
            "no_neighbour": ("none", "all_sides")}


def profile_names() -> list[str]:
    return sorted(p.stem for p in PROFILES.glob("*.toml"))


def _load(path: Path) -> dict:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: not valid TOML ({exc})") from None


def load_profile(name_or_path: str) -> Profile:
    """A rule profile by name (layers/rules/profiles/NAME.toml) or by path to a TOML file."""
    path = Path(name_or_path)
    if not path.suffix:
        path = PROFILES / f"{name_or_path}.toml"
    if not path.exists():
        raise InputError(f"no rule profile {name_or_path!r}; the profiles are: {', '.join(profile_names())}"
                         " (or give the path of a .toml file)")
    data = _load(path)
    fields = {f.name for f in dataclasses.fields(Profile)} - {"name"}
    unknown = set(data) - fields
    if unknown:
        raise InputError(f"{path.name}: unknown setting(s) {sorted(unknown)}; known: {sorted(fields)}")
    for key, allowed in _CHOICES.items():
        if key in data and data[key] not in allowed:
            raise InputError(f"{path.name}: {key} = {data[key]!r}; use one of {', '.join(allowed)}")
    for key in ("lateral_m", "neighbour_m", "max_depth_m"):
        if key in data and not (isinstance(data[key], (int, float)) and 0 <= data[key] <= 200):
            raise InputError(f"{path.name}: {key} must be a number of metres between 0 and 200")
    return Profile(name=path.stem, **data)


def load_curb_rules(path: Path | None = None) -> CurbRules:
    path = path or HERE / "curbs.toml"
    d = _load(path)
    try:
        return CurbRules(
            lane_width_m=float(d["lane_width_m"]), minor_lane_width_m=float(d["minor_lane_width_m"]),
            minor_classes=tuple(d["minor_classes"]), median_close_m=float(d["median_close_m"]),
            pedestrian_classes=tuple(d["pedestrian_classes"]),
            no_sidewalk_classes=tuple(d["no_sidewalk_classes"]),
            ignored_classes=tuple(d["ignored_classes"]),
            lanes={k: (float(v[0]), float(v[1])) for k, v in d["lanes"].items()},
            nonmotor_lane_m={k: float(v) for k, v in d.get("nonmotor_lane_m", {}).items()})
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise InputError(f"{path.name}: missing or malformed setting ({exc})") from None
