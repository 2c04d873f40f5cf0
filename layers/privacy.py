"""What each audience may see of a layer: allow-lists, so a column nobody listed is never
served (privacy by construction, not by remembering to hide a new column).

The public (no token, the map page, tiles, Open311) never sees a reporter, their login or
contact, a photo, a unit person's name or a phone number. Staff see more, by role. Free text
the public may read (a report's description in Open311) has phone numbers and e-mail
addresses masked, since people type them into descriptions."""

from __future__ import annotations

import re

from .schema import LAYERS

STAFF = ("inspector", "dispatcher", "planner", "admin")

# who edited a zone and why: a planner's login and words, for staff only
_EDITS = ("changed_by", "change_note")
_BASE = {  # base data: what the source published, less the attrs JSON (OSM phone tags live there)
    name: [c for c in LAYERS[name].public_columns if c != "attrs" and c not in _EDITS]
    for name in ("buildings", "roads", "pois", "areas", "sites", "zones", "grid")}

PUBLIC = {
    **_BASE,
    "units": ["unit_id", "name", "type", "credit_code", "placeholder", "source"],
    "problems": ["problem_id", "category", "status", "reported_at", "channel", "public_report",
                 "department", "zone_code", "zone_version", "grid_code", "unit_id", "routed_by",
                 "location_placeholder", "duplicate_of", "stage_started_at", "stage_deadline",
                 "light_yellow_at", "light_red_after", "target_at", "closed_at", "rework_count", "extension_count"],
}
STAFF_EXTRA = {
    "zones": list(_EDITS),
    "units": ["address", "person", "phone"],
    "problems": ["description", "address", "reporter", "source_status", "route_distance_m"],
}


def visible_columns(layer: str, role: str | None) -> list[str]:
    """The columns of map layer `layer` that a user of `role` (None: the public) may see."""
    cols = list(PUBLIC.get(layer, []))
    if role in STAFF:
        cols += STAFF_EXTRA.get(layer, [])
    known = set(LAYERS[layer].column_names)
    return [c for c in cols if c in known]


# A mainland mobile number (possibly +86 / spaced), a landline with area code, an e-mail address.
_PHONE = re.compile(r"(?<!\d)(?:\+?86[ -]?)?1[3-9]\d[ -]?\d{4}[ -]?\d{4}(?!\d)|(?<!\d)0\d{2,3}-?\d{7,8}(?!\d)")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")


def redact(text: str | None) -> str | None:
    """`text` with phone numbers and e-mail addresses replaced by ***."""
    if not text:
        return text
    return _EMAIL.sub("***", _PHONE.sub("***", text))


__all__ = ["PUBLIC", "STAFF", "redact", "visible_columns"]
