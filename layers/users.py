"""Users, roles and API tokens.

A user has one role (workflow.ROLES). Passwords are kept as werkzeug's salted scrypt hash;
tokens are random 32-byte strings shown once, of which only the SHA-256 is stored, so a
copy of the store gives nobody a way in. A unit user answers the cases of its unit_id.
Every change is written with its audit row (never the password, the token or its hash);
`by` and `origin` say who made it and from where (the command line by default)."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from dataclasses import dataclass

import pandas as pd
from werkzeug.security import check_password_hash, generate_password_hash

from . import audit
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


CLI = User("cli", "admin")  # the command line: whoever may open the store


def add_user(store: Store, name: str, role: str, password: str, unit_id: str | None = None, *,
             by: User = CLI, origin: str = "cli") -> User:
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
        audit.record(tx, actor=by.name, role=by.role, action="users:add", target=name,
                     detail={"role": role, "unit_id": unit_id}, origin=origin)
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


def issue_token(store: Store, name: str, *, by: User = CLI, origin: str = "cli") -> str:
    """A new API token for user `name` (printed once; only its hash is stored)."""
    get_user(store, name)
    token = "zm_" + secrets.token_urlsafe(32)
    with store.transaction() as tx:
        tx.append("tokens", pd.DataFrame([{"token_hash": _digest(token), "user_name": name,
                                           "created_at": dt.datetime.now(dt.UTC), "revoked": False,
                                           "source": "zonemap token"}]))
        audit.record(tx, actor=by.name, role=by.role, action="token:issue", target=name, origin=origin)
    return token


def revoke_tokens(store: Store, name: str, *, by: User = CLI, origin: str = "cli") -> int:
    """Revoke every live token of user `name`; how many there were. Read and revoked in one
    transaction, so a token issued meanwhile is not missed by the count."""
    with store.transaction() as tx:
        live = [r for r in tx.rows("tokens", {"user_name": name}) if not r["revoked"]]
        for r in live:
            tx.update("tokens", int(r["fid"]), {"revoked": True})
        audit.record(tx, actor=by.name, role=by.role, action="token:revoke", target=name,
                     detail={"revoked": len(live)}, origin=origin)
    return len(live)


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
