"""The audit log: one row per write, in the same transaction as the write it describes.

A row says who (actor, role), when (UTC), what (action, target, a short JSON detail) and from
where (the client address, or "cli"). Because it is appended inside the writer's transaction,
a write that is rolled back leaves no audit row, and a committed write always has one.
Secrets never go in: `detail` refuses keys that name a password or a token."""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd

from .errors import StoreError

DETAIL_MAX = 2000  # characters of JSON: a summary, not a copy of the data
_SECRET_WORDS = ("password", "token", "secret")


def _detail_text(detail: dict | None) -> str | None:
    if not detail:
        return None
    secret = [k for k in detail if any(w in str(k).lower() for w in _SECRET_WORDS)]
    if secret:  # a programming error, not a user's: fail the write rather than keep a secret
        raise StoreError(f"audit detail may not hold {secret[0]!r}")
    text = json.dumps(detail, ensure_ascii=False, default=str, sort_keys=True)
    if len(text) > DETAIL_MAX:
        raise StoreError(f"audit detail is {len(text)} characters; keep it under {DETAIL_MAX}")
    return text


def record(tx, *, actor: str, role: str | None, action: str, target: str | None,
           detail: dict | None = None, origin: str | None = None, at: dt.datetime | None = None) -> None:
    """Append one audit row inside `tx` (a layers.store Transaction)."""
    tx.append("audit", pd.DataFrame([{
        "at": at or dt.datetime.now(dt.UTC), "actor": actor, "role": role, "action": action,
        "target": None if target is None else str(target), "detail": _detail_text(detail),
        "origin": origin, "source": "zonemap"}]))


__all__ = ["record"]
