"""Downloads: the 台账 ledger (XLSX, CSV) for staff, and the zones as GeoJSON or GeoPackage
(the public variant, `public=1`, for anyone). The files are the command line's
(`zonemap export …`, layers/export.py), written to a temporary folder and streamed, the
folder removed when the answer is sent."""

from __future__ import annotations

import datetime as dt
import re
import shutil
import tempfile
from pathlib import Path

from flask import Blueprint, Response, request

from layers import export
from layers.errors import Forbidden, InputError
from layers.privacy import STAFF
from layers.users import User

from .common import services, signed_in

bp = Blueprint("exports", __name__)

PREFIX = "/api/export"
MEDIA = {"xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
         "csv": "text/csv; charset=utf-8", "geojson": "application/geo+json",
         "gpkg": "application/geopackage+sqlite3"}
CHUNK = 1 << 16


def _staff() -> User:
    user = signed_in()
    if user.role not in STAFF:
        raise Forbidden(f"{user.name} ({user.role}) may not download this: it is for staff "
                        f"({', '.join(STAFF)})")
    return user


def _arg(name: str, pattern: str, hint: str) -> str | None:
    text = request.args.get(name)
    if text in (None, ""):
        return None
    if not re.fullmatch(pattern, text):
        raise InputError(f"parameter {name!r}: {text!r} is not {hint}")
    return text


def _day(name: str) -> dt.date | None:
    text = _arg(name, r"\d{4}-\d{2}-\d{2}", "a date (YYYY-MM-DD)")
    try:
        return dt.date.fromisoformat(text) if text else None
    except ValueError:
        raise InputError(f"parameter {name!r}: {text!r} is not a date (YYYY-MM-DD)") from None


def _public() -> bool:
    return _arg("public", r"[01]", "0 or 1") == "1"


def _send(write, fmt: str, stem: str) -> Response:
    """Run `write(path)` in a temporary folder and stream the file it made, then remove it."""
    folder = Path(tempfile.mkdtemp(prefix="zonemap-export-"))
    try:
        path = folder / f"{stem}.{fmt}"
        write(path)
        size = path.stat().st_size
        handle = path.open("rb")
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise

    def clean():
        handle.close()
        shutil.rmtree(folder, ignore_errors=True)

    def chunks():
        try:
            while block := handle.read(CHUNK):
                yield block
        finally:
            clean()

    # not direct_passthrough: werkzeug then skips the response's close, and the folder would stay
    response = Response(chunks(), mimetype=MEDIA[fmt])
    response.headers["Content-Length"] = str(size)
    response.headers["Content-Disposition"] = f'attachment; filename="{path.name}"'
    response.headers["Cache-Control"] = "no-store"  # staff files hold persons and phones
    response.call_on_close(clean)  # also when the body is never read (HEAD, a client gone)
    return response


def _ledger(fmt: str) -> Response:
    _staff()
    as_of = _day("as_of")
    month = _arg("period", r"\d{4}-\d{2}", "a month (YYYY-MM)")
    street = request.args.get("street") or None
    svc = services()
    tz = svc.rules.tz
    period = export.choose_period(tz, month=month, as_of=as_of)
    book = export.ledger(svc.store, as_of=as_of, street=street, period=period, tz=tz)
    day = as_of or svc.city_today()
    return _send(lambda path: export.write_ledger(book, path, fmt), fmt, f"ledger-{day}")


def _zones(fmt: str) -> Response:
    public = _public()
    user = None if public else _staff()
    as_of = _day("as_of")
    svc = services()
    frame = export.gis_frame(svc.store, "zones", as_of=as_of, public=public,
                             role=user.role if user else "public", tz=svc.rules.tz)
    stem = f"zones-{as_of or svc.city_today()}" + ("-public" if public else "")
    return _send(lambda path: export.write_gis(frame, path, fmt, layer="zones"), fmt, stem)


@bp.get(f"{PREFIX}/ledger.xlsx")
def ledger_xlsx():
    return _ledger("xlsx")


@bp.get(f"{PREFIX}/ledger.csv")
def ledger_csv():
    return _ledger("csv")


@bp.get(f"{PREFIX}/zones.geojson")
def zones_geojson():
    return _zones("geojson")


@bp.get(f"{PREFIX}/zones.gpkg")
def zones_gpkg():
    return _zones("gpkg")


__all__ = ["bp"]
