"""`zonemap notify run|list|digest`: the notices to responsible parties (layers/notify.py).

Registered on the main group by scripts/cli.py; the store is the main group's --db."""

from __future__ import annotations

import json
import sys
import time

import click

from layers import notify
from layers.errors import ZonemapError
from layers.settings import Settings
from layers.store import open_store

json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")


def _show(as_json: bool, data, text: str) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str) if as_json else text)


def _with_store(ctx, as_json: bool, fn):
    """fn(store, settings) on the main group's store; a ZonemapError is a message and exit 1."""
    try:
        settings = Settings.load({"db": ctx.obj["db"] if ctx.obj.get("db_given") else None})
        with open_store(ctx.obj["db"]) as store:
            return fn(store, settings)
    except ZonemapError as exc:
        if as_json:
            click.echo(json.dumps({"error": str(exc)}, ensure_ascii=False, indent=2))
        else:
            click.echo(f"error: {exc}", err=True)
        sys.exit(1)


@click.group("notify")
def notify_group():
    """Notices to the responsible party: deliver the outbox, show it, queue the daily digest."""


@notify_group.command("run")
@click.option("--once", is_flag=True, help="Deliver what is due now and exit (else: every --interval seconds).")
@click.option("--interval", type=float, default=15.0, show_default=True, help="Seconds between rounds.")
@json_option
@click.pass_context
def notify_run(ctx, once, interval, as_json):
    """Find yellow and red cases, then send the due notices by e-mail and the gateway, with retries."""
    def one(store, settings):
        counts = notify.run_once(store, settings)
        waiting = [c for c in notify.CHANNELS if c not in notify.configured(settings)]
        _show(as_json, counts | {"unconfigured": waiting},
              " ".join(f"{k} {v}" for k, v in counts.items())
              + (f"  ({', '.join(waiting)} not configured: those notices wait)" if waiting else ""))

    while True:
        _with_store(ctx, as_json, one)
        if once:
            return
        time.sleep(interval)


@notify_group.command("list")
@click.option("--status", type=click.Choice(notify.STATUSES), help="Only notices in this state.")
@click.option("--unit", help="Only notices about this unit_id.")
@json_option
@click.pass_context
def notify_list(ctx, status, unit, as_json):
    """The outbox, newest first: event, case, recipient, channel, state, attempts, last error."""
    rows = _with_store(ctx, as_json, lambda store, _s: notify.listing(store, status, unit))
    _show(as_json, rows, "\n".join(
        f"{r['notice_id']} {r['created_at']:%Y-%m-%d %H:%M} {r['event']:<10} {r['problem_id'] or '—':<18} "
        f"{r['recipient']}/{r['channel']} {r['status']} ×{r['attempts']}"
        + (f"  {r['last_error']}" if r["last_error"] else "") for r in rows) or "the outbox is empty")


@notify_group.command("digest")
@json_option
@click.pass_context
def notify_digest(ctx, as_json):
    """Queue today's digest for every unit with open cases (once a city day); `run` sends it."""
    n = _with_store(ctx, as_json, lambda store, _s: notify.digest(store))
    _show(as_json, {"queued": n}, f"{n} digest notice(s) queued")


COMMANDS = [notify_group]
