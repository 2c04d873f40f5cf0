"""Signing in with a browser (webmap/auth.py) through the real app: the login form, the
session cookie's flags, logout, /api/session, CSRF on the form and on cookie-authenticated
writes (bearer-token clients need none), failed logins rate-limited, and the secret key."""

import os
import re
import stat

import pytest

from layers.errors import InputError
from layers.settings import Settings
from layers.store import open_store
from layers.users import add_user, issue_token
from tests.layers.test_zone_edit import grid_city
from webmap.app import create_app
from webmap.auth import secret_key

PASSWORD = "correct horse 42"


@pytest.fixture
def web(tmp_path):
    db = str(tmp_path / "a.gpkg")
    with grid_city(db) as s:
        add_user(s, "plan", "planner", PASSWORD)
        add_user(s, "shop", "unit", PASSWORD, "U-A")
        token = issue_token(s, "plan")
    app = create_app({"db": db, "auth_failure_limit": "3/minute", "secret_key": "k" * 40, "TESTING": True})
    return app, token


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def sign_in(client, name="plan", password=PASSWORD, next_=""):
    token = csrf_of(client.get("/login").get_data(as_text=True))
    return client.post("/login", data={"name": name, "password": password, "csrf_token": token, "next": next_})


def test_login_sets_an_httponly_lax_session_cookie_and_logout_ends_it(web):
    app, _ = web
    client = app.test_client()
    assert client.get("/api/session").json["user"] is None
    r = sign_in(client)
    assert r.status_code == 303 and r.headers["Location"].endswith("/planner")
    cookie = r.headers["Set-Cookie"]
    assert cookie.startswith("zonemap_session=") and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # plain HTTP: a Secure cookie would never come back
    me = client.get("/api/session").json
    assert me["user"] == {"name": "plan", "role": "planner", "unit_id": None} and me["csrf_token"]
    assert client.post("/logout").status_code == 400  # logout is a write too: it needs the token
    r = client.post("/logout", headers={"X-CSRFToken": me["csrf_token"]})
    assert r.status_code == 303 and client.get("/api/session").json["user"] is None


def test_over_https_the_cookie_is_secure(web):
    app, _ = web
    client = app.test_client()
    page = client.get("/login", base_url="https://zonemap.example")
    r = client.post("/login", base_url="https://zonemap.example", headers={"Referer": "https://zonemap.example/login"},
                    data={"name": "plan", "password": PASSWORD, "csrf_token": csrf_of(page.get_data(as_text=True))})
    assert r.status_code == 303 and "Secure" in r.headers["Set-Cookie"]


def test_a_wrong_password_shows_the_form_again_and_next_stays_on_this_site(web):
    app, _ = web
    client = app.test_client()
    r = sign_in(client, password="wrong password")
    assert r.status_code == 401 and "wrong name or password" in r.get_data(as_text=True)
    assert client.get("/api/session").json["user"] is None
    assert sign_in(client, next_="//evil.example/x").headers["Location"].endswith("/planner")
    assert sign_in(client, "shop", next_="/cases?status=filed").headers["Location"].endswith("/cases?status=filed")


def test_a_form_post_without_the_csrf_token_is_refused(web):
    app, _ = web
    client = app.test_client()
    client.get("/login")
    r = client.post("/login", data={"name": "plan", "password": PASSWORD})
    assert r.status_code == 400 and "CSRF token" in r.get_data(as_text=True)
    assert client.get("/api/session").json["user"] is None


def test_cookie_writes_need_the_csrf_token_and_bearer_calls_do_not(web):
    app, token = web
    client = app.test_client()
    sign_in(client)
    body = {"unit_id": "U-B", "base_version": 1, "note": "cookie"}
    r = client.post("/api/planner/zones/F000001/assign", json=body)
    assert r.status_code == 400 and "CSRF token" in r.json["error"] and "X-CSRFToken" in r.json["error"]
    assert client.post("/api/planner/zones/F000001/assign", json=body,
                       headers={"X-CSRFToken": "forged"}).status_code == 400
    csrf = client.get("/api/session").json["csrf_token"]
    ok = client.post("/api/planner/zones/F000001/assign", json=body, headers={"X-CSRFToken": csrf})
    assert ok.status_code == 200 and ok.json["version"] == 2 and ok.json["changed_by"] == "plan"
    api = app.test_client()  # an API client: a bearer token, no cookie, no CSRF token
    r = api.post("/api/planner/zones/F000002/assign", json={"unit_id": "U-A", "base_version": 1},
                 headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200 and r.json["unit"]["unit_id"] == "U-A"


def test_failed_logins_are_rate_limited_per_address(web):
    app, _ = web
    client = app.test_client()
    assert [sign_in(client, password="nope nope").status_code for _ in range(3)] == [401, 401, 401]
    assert sign_in(client, password="nope nope").status_code == 429
    assert sign_in(client).status_code == 429  # even the right password waits
    elsewhere = app.test_client()
    token = csrf_of(elsewhere.get("/login").get_data(as_text=True))
    r = elsewhere.post("/login", environ_base={"REMOTE_ADDR": "10.0.0.9"},
                       data={"name": "plan", "password": PASSWORD, "csrf_token": token})
    assert r.status_code == 303  # another address is not held up


def test_the_secret_key_is_made_once_with_mode_0600_unless_set(tmp_path):
    path = tmp_path / "var" / "secret_key"
    key = secret_key(Settings.load({}, environ={}), path)
    assert len(key) >= 32 and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert secret_key(Settings.load({}, environ={}), path) == key  # every worker reads the same one
    assert secret_key(Settings.load({}, environ={"ZONEMAP_SECRET_KEY": "s" * 32}), path) == "s" * 32
    with pytest.raises(InputError, match=r"ZONEMAP_SECRET_KEY.*32 characters"):
        Settings.load({}, environ={"ZONEMAP_SECRET_KEY": "short"})
    described = {d["name"]: d["value"] for d in Settings.load({"secret_key": "t" * 40}).describe()}
    assert described["secret_key"] == "***"


def test_a_session_of_a_disabled_user_signs_in_nobody(web, tmp_path):
    app, _ = web
    client = app.test_client()
    sign_in(client)
    with open_store(str(tmp_path / "a.gpkg")) as s, s.transaction() as tx:
        (row,) = tx.rows("users", {"name": "plan"})
        tx.update("users", row["fid"], {"active": False})
    assert client.get("/api/session").json["user"] is None
    assert client.get("/api/planner/zones/F000001").status_code == 401
