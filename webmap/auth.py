"""Signing in with a browser: /login, /logout, /api/session, and CSRF protection.

A signed-in browser holds a signed session cookie (HttpOnly, SameSite=Lax, Secure when
served over HTTPS) naming the user and when they signed in; `common.current_user` reads it
when a request carries no bearer token, and a session older than SESSION_HOURS or of a
disabled user counts for nothing. API clients keep their tokens.

CSRF (Flask-WTF's CSRFProtect): the login form, and every write made with the session
cookie, must carry the token (the form's `csrf_token` field or the X-CSRFToken header; pages
have it in <meta name="csrf-token">, /api/session answers it). A bearer-token request needs
none: no browser sends that header by itself. Failed sign-ins answer 401 and are counted by
the app's failed-sign-in limit (ZONEMAP_AUTH_FAILURE_LIMIT, per address), like bad tokens.

The key that signs sessions and tokens is ZONEMAP_SECRET_KEY, else one generated once and
kept in var/secret_key (mode 0600), so that every gunicorn worker and restart shares it."""

from __future__ import annotations

import logging
import os
import secrets
import time
from pathlib import Path
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
    current_app,
    jsonify,
    redirect,
    render_template,
    render_template_string,
    request,
    session,
)
from flask.sessions import SecureCookieSessionInterface
from flask_wtf.csrf import CSRFError, CSRFProtect, generate_csrf

from layers.errors import InputError
from layers.settings import ROOT, Settings
from layers.users import ANONYMOUS, check_password

from .common import SESSION_KEY, current_user, form_fields, services, settings
from .i18n import pick_lang

log = logging.getLogger("zonemap.web")
bp = Blueprint("auth", __name__)  # JSON: /api/session
pages_bp = Blueprint("auth_pages", __name__)  # HTML: /login, /logout (not in the OpenAPI document)
csrf = CSRFProtect()

SECRET_FILE = ROOT / "var" / "secret_key"
HOME = {"planner": "/planner", "admin": "/planner", "inspector": "/inspector", "dispatcher": "/inspector",
        "unit": "/unit"}
SAFE = ("GET", "HEAD", "OPTIONS", "TRACE")
CSRF_HELP = ("this request was refused: it lacks a valid CSRF token ({why}). Reload the page and try "
             "again; scripts send the page's csrf-token as the X-CSRFToken header, API clients a bearer token")


def secret_key(config: Settings, path: Path = SECRET_FILE) -> str:
    """ZONEMAP_SECRET_KEY, else the key kept in `path`, made once (mode 0600) when missing."""
    if config.secret_key:
        return config.secret_key
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    try:  # O_EXCL: two processes starting at once make one key, and both read it
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_key(path)
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_hex(32))
    return _read_key(path)


def _read_key(path: Path) -> str:
    for _ in range(50):  # another process may be between creating the file and writing it
        key = path.read_text().strip()
        if key:
            return key
        time.sleep(0.01)
    raise InputError(f"{path} is empty: delete it (a new key is made) or set ZONEMAP_SECRET_KEY")


class _Sessions(SecureCookieSessionInterface):
    """Session cookies marked Secure when the request came over HTTPS (directly, or through
    a trusted proxy that says so in X-Forwarded-Proto)."""

    def get_cookie_secure(self, app) -> bool:
        if request.is_secure:
            return True
        return bool(settings().trust_proxy) and request.headers.get("X-Forwarded-Proto", "") == "https"


def init_app(app: Flask, config: Settings) -> None:
    """Sessions, CSRF and the auth blueprint, for create_app."""
    app.secret_key = secret_key(config)
    app.session_interface = _Sessions()
    app.config.update(SESSION_COOKIE_NAME="zonemap_session", SESSION_COOKIE_HTTPONLY=True,
                      SESSION_COOKIE_SAMESITE="Lax", WTF_CSRF_CHECK_DEFAULT=False,
                      WTF_CSRF_TIME_LIMIT=None)  # a token lives as long as its session (SESSION_HOURS)
    csrf.init_app(app)
    app.before_request(_csrf_guard)
    app.register_blueprint(bp)
    app.register_blueprint(pages_bp)


def _csrf_guard():
    """Writes made with the session cookie need the CSRF token; bearer-token calls do not,
    nor do anonymous ones (they carry no one's authority). /login checks its own form."""
    if request.method in SAFE or request.endpoint == "auth_pages.login":
        return
    if SESSION_KEY not in session or "Authorization" in request.headers:
        return
    _protect()


def _protect() -> None:
    try:
        csrf.protect()
    except CSRFError as exc:
        raise InputError(CSRF_HELP.format(why=exc.description)) from None


# ---- routes ------------------------------------------------------------------------------

LOGIN_FALLBACK = """<!doctype html><html lang="{{ lang }}"><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>登录 / Sign in</title>
<body style="font:16px sans-serif;margin:2em"><h1>登录 / Sign in</h1>
{% if error %}<p role="alert" style="color:#b00">{{ error }}</p>{% endif %}
<form method="post" action="/login"><input type="hidden" name="csrf_token" value="{{ csrf_token() }}">
<input type="hidden" name="next" value="{{ next }}">
<p><label>用户名 / Name <input name="name" value="{{ name }}" autocomplete="username" required></label></p>
<p><label>密码 / Password <input name="password" type="password" autocomplete="current-password" required></label></p>
<p><button type="submit" style="min-height:44px">登录 / Sign in</button></p></form></body></html>"""


def _login_page(error: str | None = None, status: int = 200, name: str = "", next_: str = ""):
    lang = pick_lang(request.args.get("lang"))
    values = {"error": error, "name": name, "next": next_, "lang": lang}
    if "login.html" in current_app.jinja_env.list_templates():  # the pages' own, when there
        return render_template("login.html", **values), status
    return render_template_string(LOGIN_FALLBACK, **values), status


def _safe_next(target: str | None) -> str | None:
    """A path on this site to go to after signing in; anything else (another host, //host,
    a scheme) is ignored."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    parts = urlsplit(target)
    return None if parts.scheme or parts.netloc else target


@pages_bp.get("/login")
def login_page():
    return _login_page(next_=_safe_next(request.args.get("next")) or "")


@pages_bp.post("/login")
def login():
    fields = form_fields()
    name, next_ = fields.get("name", "").strip(), _safe_next(fields.get("next")) or ""
    try:
        _protect()
    except InputError as exc:
        return _login_page(str(exc), 400, name, next_)
    user = check_password(services().store, name, fields.get("password", "")) if name else None
    if user is None:
        log.info("failed sign-in for %r", name[:64])
        return _login_page("用户名或密码错误 / wrong name or password", 401, name, next_)
    session.clear()  # a new session (and CSRF token) on every sign-in: no fixation
    session[SESSION_KEY] = {"name": user.name, "at": time.time()}
    return redirect(next_ or HOME.get(user.role, "/"), code=303)


@pages_bp.post("/logout")
def logout():
    session.clear()
    return redirect("/", code=303)


@bp.get("/api/session")
def session_info():
    user = current_user()
    return jsonify({"user": None if user is ANONYMOUS else user.to_dict(),
                    "csrf_token": generate_csrf()})


__all__ = ["bp", "csrf", "init_app", "pages_bp", "secret_key"]
