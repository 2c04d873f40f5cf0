"""The flags `route` and `hotspots` share for files larger than memory: `--engine dask` with
`--scheduler` (a running cluster) or `--workers` (a LocalCluster made for the run)."""

from __future__ import annotations

import click

from layers.errors import InputError

WORKERS = 2


def engine_options(command):
    """Add --engine, --scheduler and --workers to a command (as engine, scheduler, workers)."""
    for option in reversed((
        click.option("--engine", type=click.Choice(["memory", "dask"]), default="memory", show_default=True,
                     help="memory: read the whole file; dask: a file larger than memory (GeoParquet or CSV), "
                          "in partitions on a Dask cluster."),
        click.option("--scheduler", metavar="tcp://HOST:8786",
                     help="dask: the scheduler of a running cluster (its workers must see the same files)."),
        click.option("--workers", type=click.IntRange(1, 64),
                     help=f"dask without --scheduler: worker processes of the local cluster [default: {WORKERS}]."),
    )):
        command = option(command)
    return command


def engine_args(engine: str, scheduler: str | None, workers: int | None) -> dict:
    """The engine keywords of layers' route_file/hotspots, refusing flags that would do nothing."""
    if engine != "dask" and (scheduler or workers):
        raise InputError("--scheduler and --workers are for --engine dask")
    if scheduler and workers:
        raise InputError("--workers sizes the local cluster; a running cluster (--scheduler) has its own workers")
    return {"engine": engine, "scheduler": scheduler, "workers": workers or WORKERS}
