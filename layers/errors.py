"""The few exceptions zonemap raises on purpose; each message says what to do.

Each class carries the HTTP status a web answer gives it (`status`), so the web layer maps
errors in one place: a handler reads `exc.status` and renders JSON, Open311's error list or
a page. The command line prints the message and exits 1."""


class ZonemapError(Exception):
    """Base class: an error whose message is meant for the user as it is."""

    status = 400


class InputError(ZonemapError):
    """A file, option or value the user gave cannot be used (names the file, row, field)."""

    status = 400


class OutsideServiceArea(InputError):
    """A report at a place this deployment does not serve (outside its zones' extent plus a
    margin, or outside its boundary file)."""

    status = 422


class Unauthorized(ZonemapError):
    """No valid sign-in where one is needed."""

    status = 401


class Forbidden(ZonemapError):
    """The user's role may not do this."""

    status = 403


class NotFound(ZonemapError):
    """No such case, zone, unit or page (or one the user may not see)."""

    status = 404


class Refused(ZonemapError):
    """The state of the thing does not allow the change (a move the workflow does not allow
    from a case's state, a stale edit)."""

    status = 409


class TooLarge(ZonemapError):
    """A body or file larger than this server takes."""

    status = 413


class StoreError(ZonemapError):
    """The store cannot be opened or written (a constraint broken by a file, a damaged file):
    for a web client it is the server's fault, not the request's."""

    status = 500


class StoreUnavailable(StoreError):
    """The store is there but cannot answer now (PostgreSQL restarting, the GeoPackage write
    lock held longer than the busy timeout): try again shortly."""

    status = 503
