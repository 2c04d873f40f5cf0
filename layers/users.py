"""Users, roles and API tokens.

A user has one role (workflow.ROLES). Passwords are kept as werkzeug's salted scrypt hash;
tokens are random 32-byte strings shown once, of which only the SHA-256 is stored, so a
copy of the store gives nobody a way in. A unit user answers the cases of its unit_id."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from dataclasses import dataclass

import pandas as pd
from werkzeug.security import check_password_hash, generate_password_hash

from .errors import InputError
from .store import Store
from .workflow import ROLES

MIN_PASSWORD = 8


@dataclass(frozen=True)
class User:
    name: str
    role: str
    unit_id: str | None = None

    def to_dict(self) -> dict:
        return {"name": self.name, "role": self.role, "unit_id": self.unit_id}


ANONYMOUS = User("anonymous", "public")


def add_user(store: Store, name: str, role: str, password: str, unit_id: str | None = None) -> User:
    name = (name or "").strip()
    if not re.fullmatch(r"[\w.@-]{2,64}", name):
        raise InputError(f"user name {name!r}: use 2–64 letters, digits, _ . @ or -")
    if role not in ROLES:
        raise InputError(f"role {role!r}: use one of {', '.join(ROLES)}")
    if len(password or "") < MIN_PASSWORD:
        raise InputError(f"the password must have at least {MIN_PASSWORD} characters")
    if role == "unit":
        if not unit_id:
            raise InputError("a unit user needs --unit UNIT_ID: the unit whose cases it answers")
        if store.read("units", where={"unit_id": unit_id}).empty and not unit_id.startswith(("FALLBACK-", "DEPT-")):
            raise InputError(f"there is no unit {unit_id!r} in the store; see `zonemap zones list` "
                             "or import the units first")
    elif unit_id:
        raise InputError("--unit is only for role unit")
    with store.transaction() as tx:
        if tx.rows("users", {"name": name}):
            raise InputError(f"user {name!r} exists already")
        tx.append("users", pd.DataFrame([{
            "name": name, "role": role, "unit_id": unit_id, "active": True,
            "password_hash": generate_password_hash(password), "created_at": dt.datetime.now(dt.UTC),
            "source": "zonemap users add"}]))
    return User(name, role, unit_id)


def get_user(store: Store, name: str) -> User:
    rows = store.read("users", where={"name": name})
    if rows.empty or not rows["active"].iloc[0]:
        raise InputError(f"no active user {name!r}; add one with `zonemap users add {name} --role ROLE`")
    r = rows.iloc[0]
    return User(r["name"], r["role"], r["unit_id"])


def list_users(store: Store) -> list[dict]:
    rows = store.read("users")
    return [{"name": r["name"], "role": r["role"], "unit_id": r["unit_id"], "active": bool(r["active"])}
            for _, r in rows.iterrows()]


def check_password(store: Store, name: str, password: str) -> User | None:
    rows = store.read("users", where={"name": name})
    if rows.empty or not rows["active"].iloc[0] or not check_password_hash(rows["password_hash"].iloc[0], password):
        return None
    r = rows.iloc[0]
    return User(r["name"], r["role"], r["unit_id"])


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def issue_token(store: Store, name: str) -> str:
    """A new API token for user `name` (printed once; only its hash is stored)."""
    get_user(store, name)
    token = "zm_" + secrets.token_urlsafe(32)
    store.append("tokens", pd.DataFrame([{"token_hash": _digest(token), "user_name": name,
                                          "created_at": dt.datetime.now(dt.UTC), "revoked": False,
                                          "source": "zonemap token"}]))
    return token


def revoke_tokens(store: Store, name: str) -> int:
    rows = store.read("tokens", where={"user_name": name})
    with store.transaction() as tx:
        for fid in rows.loc[~rows["revoked"].astype(bool), "fid"]:
            tx.update("tokens", int(fid), {"revoked": True})
    return int((~rows["revoked"].astype(bool)).sum())


def user_for_token(store: Store, token: str) -> User | None:
    """The active user a token signs in as, or None (unknown, revoked or disabled)."""
    if not token or len(token) > 200:
        return None
    rows = store.read("tokens", where={"token_hash": _digest(token)})
    if rows.empty or rows["revoked"].iloc[0]:
        return None
    try:
        return get_user(store, rows["user_name"].iloc[0])
    except InputError:
        return None
