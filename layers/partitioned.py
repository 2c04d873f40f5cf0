"""Files larger than memory: points read in partitions with dask-geopandas and worked on a Dask
cluster (`--engine dask`), each partition by the same code the in-memory path runs on the whole
file: `layers/routing.py` to route (`layers/route_file.py`), `geo/hotspots.py` to count
(`layers/hotspots.py`). Nothing here is a second router or a second statistic; this module only
reads, ships and adds up.

- `cluster`: a Client of a running cluster (`--scheduler tcp://host:8786`), else a LocalCluster
  of `workers` processes with one thread each on 127.0.0.1 (processes, because making shapely
  points and reprojecting hold the GIL; see docs/routing.md), closed at the end.
- `PointFile.open`: GeoParquet (a file or a folder of parts, read with dask-geopandas), a plain
  Parquet or a CSV (a file or a glob, read by dask in blocks of `BLOCK`) with coordinate
  columns; `points(part)` makes a partition's points exactly as the in-memory reader does.
- `broadcast`: one copy of the zones (a `Router`) or the 单元网格 on every worker, once, not
  once per partition.
- `add_up`: per-partition results summed in a tree, so no machine holds them all at once.
- `Output`: a GeoParquet folder (one part per partition) or CSV parts, each written by the
  worker that made it, beside the target, and moved into place only when every one is done.
- `HotspotParts`: the partition-wise counts behind `hotspots --engine dask` (cells, density,
  per zone and unit, peaks), each summed over partitions and then handed to the same
  functions as the in-memory counts.
"""

from __future__ import annotations

import glob
import shutil
import uuid
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj

from geo import hotspots as geo_hotspots

from .errors import InputError
from .readers import Source, read_file, xy_columns, xy_points

PARQUET = (".parquet", ".geoparquet")
CSV = (".csv", ".txt")
BLOCK = "64MB"  # CSV bytes per partition: ~1M short rows, a few hundred MB once parsed
TREE = 8  # partition results added up eight at a time
CONNECT = "5s"  # how long a --scheduler has to answer


def _quiet() -> None:
    """dask's Parquet reader calls a pandas method that pandas 3.1 deprecates (inplace
    set_index): nothing a user can act on, so not shown."""
    from pandas.errors import Pandas4Warning

    warnings.filterwarnings("ignore", category=Pandas4Warning, module=r"dask\.")


@contextmanager
def cluster(scheduler: str | None = None, workers: int = 2):
    """A dask Client: of the running cluster at `scheduler`, else of a LocalCluster of
    `workers` processes (one thread each, on 127.0.0.1, no dashboard) made for this run."""
    from distributed import Client, LocalCluster

    _quiet()
    if scheduler:
        try:
            client = Client(scheduler, timeout=CONNECT)
        except (OSError, TimeoutError, ValueError) as exc:
            raise InputError(f"--scheduler {scheduler}: no Dask scheduler answers there ({exc}); start one "
                             "(`dask scheduler`, workers with `dask worker` in the zonemap folder) or leave "
                             "--scheduler out for a local cluster") from None
        with client:
            client.run(_quiet)
            yield client
        return
    if not 1 <= workers <= 64:
        raise InputError(f"--workers must be 1–64, not {workers}")
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as local, Client(local) as client:
        client.run(_quiet)
        yield client


def broadcast(client, value):
    """`value` on every worker, sent once; pass the answer to tasks in its place."""
    return client.scatter(value, broadcast=True, hash=False)


def add_up(client, parts: list, combine):
    """`combine(*results)` over the delayed per-partition `parts`, in a tree of width TREE."""
    from dask import delayed

    while len(parts) > 1:
        parts = [delayed(combine)(*parts[i:i + TREE]) for i in range(0, len(parts), TREE)]
    return client.compute(parts[0]).result()


# ---- reading -----------------------------------------------------------------------------

def _kind(path: str) -> str:
    p = Path(path)
    if p.is_dir() or p.suffix.lower() in PARQUET:
        return "parquet"
    if p.suffix.lower() in CSV:
        return "csv"
    raise InputError(f"{p.name}: --engine dask reads GeoParquet (a .parquet file or a folder of them) or CSV "
                     "(a file or a glob such as 'reports-*.csv'); convert other files, or route them without "
                     "--engine dask")


def _exists(path: str) -> None:
    if not (glob.glob(path) if glob.has_magic(path) else Path(path).exists()):
        raise InputError(f"{path}: no such file")


@dataclass(frozen=True)
class Coordinates:
    """How a partition's rows become points: from the columns `xy`, else the GeoParquet
    geometry; `crs` the points' CRS (None: the file declares none). Small: sent with each task."""

    xy: tuple[str, str] | None
    crs: pyproj.CRS | None

    def points(self, part: pd.DataFrame) -> gpd.GeoDataFrame:
        """One partition's rows with their points (from the coordinate columns as the
        in-memory CSV reader makes them: None where one is not a number)."""
        if self.xy is None:
            return part if self.crs is None or part.crs is not None else part.set_crs(self.crs)
        geoms, _ = xy_points(part, self.xy)
        return gpd.GeoDataFrame(part, geometry=geoms, crs=self.crs)


@dataclass
class PointFile:
    """A file read in partitions: `frame` (a dask collection, one task per partition) and
    how its rows become points (`coords`)."""

    name: str
    frame: object
    coords: Coordinates

    @property
    def crs(self) -> pyproj.CRS | None:
        return self.coords.crs

    def points(self, part: pd.DataFrame) -> gpd.GeoDataFrame:
        return self.coords.points(part)

    @classmethod
    def open(cls, path, x: str | None = None, y: str | None = None, default_crs=None) -> PointFile:
        """`default_crs`: the CRS of points whose file declares none (CSV coordinates)."""
        import dask.dataframe as dd
        import dask_geopandas

        path = str(path)
        kind = _kind(path)
        _exists(path)
        name = Path(path).name
        if kind == "csv":
            frame = dd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], blocksize=BLOCK,
                                encoding="utf-8-sig")
        else:
            try:
                frame = dask_geopandas.read_parquet(path)
            except ValueError as exc:
                if "geo metadata" not in str(exc):
                    raise InputError(f"{name} is not a readable Parquet dataset: {exc}") from None
                frame = dd.read_parquet(path)  # a plain table: coordinates in columns
            except OSError as exc:
                raise InputError(f"{name} is not a readable Parquet dataset: {exc}") from None
        geo = isinstance(frame._meta, gpd.GeoDataFrame)
        xy = None
        if x or y or not geo:
            xy = xy_columns(Path(path), frame._meta, x, y)
            if xy is None:
                raise InputError(f"{name} has no coordinates: name the columns with --x and --y")
        crs = (frame.crs if geo and xy is None else None) or default_crs
        return cls(name, frame, Coordinates(xy, None if crs is None else pyproj.CRS(crs)))


def read_in_memory(path, x: str | None = None, y: str | None = None) -> Source:
    """The whole file in memory (the default engine): `readers.read_file`, and GeoParquet (or a
    plain Parquet with coordinate columns) too, so both engines read the same files."""
    p = Path(path)
    if not (p.is_dir() or p.suffix.lower() in PARQUET):
        return read_file(p, x=x, y=y)
    _exists(str(p))
    try:
        frame = gpd.read_parquet(p)
    except ValueError as exc:
        if "geo metadata" not in str(exc):
            raise InputError(f"{p.name} is not a readable Parquet dataset: {exc}") from None
        frame = gpd.GeoDataFrame(pd.read_parquet(p))
    xy = xy_columns(p, frame, x, y) if x or y or frame.geometry.name not in frame else None
    if xy is not None:
        frame = gpd.GeoDataFrame(frame.drop(columns=[c for c in ("geometry",) if c in frame]),
                                 geometry=xy_points(frame, xy)[0])
    elif "geometry" not in frame:
        raise InputError(f"{p.name} has no coordinates: name the columns with --x and --y")
    crs = frame.crs if xy is None else None
    return Source(p, "Parquet", frame, crs, np.arange(1, len(frame) + 1), "row", xy)


# ---- writing -----------------------------------------------------------------------------

def check_out(out) -> tuple[Path, str]:
    """(path, kind) of a partitioned output, before any work: `X.parquet` (a GeoParquet folder)
    or a CSV name with a * where the part number goes (`routed/part-*.csv`)."""
    out = Path(out)
    if out.suffix.lower() in PARQUET and "*" not in out.name:
        if out.exists() and not (out.is_dir() and _ours(out)):
            raise InputError(f"--out {out} exists and is not a Parquet folder: remove it or choose another name")
        return out, "parquet"
    if out.suffix.lower() == ".csv" and out.name.count("*") == 1 and "*" not in str(out.parent):
        return out, "csv"
    raise InputError(f"--out {out.name}: with --engine dask write a GeoParquet folder (routed.parquet) or CSV "
                     "parts named with a * for the part number (routed/part-*.csv)")


def _ours(folder: Path) -> bool:
    """A folder holding nothing but Parquet parts (and their metadata): one to replace."""
    return all(p.is_file() and (p.suffix == ".parquet" or p.name.startswith("_")) for p in folder.iterdir())


@dataclass(frozen=True)
class Output:
    """Where the parts of a partitioned output go: written by the workers into a folder beside
    the target (`aside`), one file per partition, then moved into place by `commit` only when
    every partition is done, so a run that fails leaves the old output (or none). Part numbers
    are zero-padded so the files sort in row order. With a remote cluster the workers write,
    so they must see the same disk."""

    path: Path
    kind: str  # "parquet" (a GeoParquet folder) or "csv" (parts named by the * of path)
    aside: Path

    @classmethod
    def to(cls, out) -> Output:
        path, kind = check_out(out)
        return cls(path, kind, path.parent / f".{path.name.replace('*', '_')}.partial-{uuid.uuid4().hex[:8]}")

    def part(self, number: int) -> Path:
        if self.kind == "parquet":
            return self.aside / f"part.{number:05d}.parquet"
        return self.aside / self.path.name.replace("*", f"{number:05d}")

    def write_part(self, table: pd.DataFrame, number: int) -> None:
        if self.kind == "parquet":
            table.to_parquet(self.part(number), index=False)
        else:
            table.to_csv(self.part(number), index=False, encoding="utf-8-sig")  # with BOM, as in memory

    @contextmanager
    def writing(self):
        """Make the folder the parts go to, and commit them when the block ends without error."""
        self.aside.mkdir(parents=True)
        try:
            yield self
            self._commit()
        finally:
            shutil.rmtree(self.aside, ignore_errors=True)

    def _commit(self) -> None:
        if self.kind == "parquet":
            old = self.aside.with_name(self.aside.name + ".old")
            if self.path.exists():
                self.path.rename(old)
            self.aside.rename(self.path)
            shutil.rmtree(old, ignore_errors=True)
            return
        for stale in glob.glob(glob.escape(str(self.path.parent)) + "/" + self.path.name):
            Path(stale).unlink()
        for part in sorted(self.aside.iterdir()):
            part.rename(self.path.parent / part.name)

    def parts(self) -> list[str]:
        if self.kind == "parquet":
            return sorted(str(p) for p in self.path.iterdir())
        return sorted(glob.glob(glob.escape(str(self.path.parent)) + "/" + self.path.name))


# ---- hotspots ----------------------------------------------------------------------------

def _points_kept(part, coords: Coordinates, select):
    return select(coords.points(part))


def _extent(part, coords, select):
    pts = _points_kept(part, coords, select)
    return len(pts), geo_hotspots.lonlat_bounds(pts) if len(pts) else np.full(4, np.nan)


def _join_extents(*parts):
    return sum(n for n, _ in parts), _bounds_of(np.array([b for _, b in parts]))


def _join_boxes(*boxes):
    return _bounds_of(np.array(boxes))


def _bounds_of(boxes: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: parts without points
        return np.r_[np.nanmin(boxes[:, :2], axis=0), np.nanmax(boxes[:, 2:], axis=0)]


def _metric_box(part, coords, select, crs):
    x, y, _ = geo_hotspots.metric_xy(_points_kept(part, coords, select), crs)
    return np.array([x.min(), y.min(), x.max(), y.max()]) if len(x) else np.full(4, np.nan)


def _raster(part, coords, select, lattice):
    x, y, _ = geo_hotspots.metric_xy(_points_kept(part, coords, select), lattice.crs)
    return lattice.raster(x, y)


def _in_polygons(part, coords, select, polygons, crs):
    x, y, _ = geo_hotspots.metric_xy(_points_kept(part, coords, select), crs)
    return geo_hotspots.counts_in(polygons, x, y)


def _pairs(part, coords, select, keys):
    pts = _points_kept(part, coords, select)
    return {k: geo_hotspots.pair_counts(pts, k) for k in keys}


def _join_pairs(*parts):
    return {k: pd.concat([p[k] for p in parts], ignore_index=True) for k in parts[0]}


def _peaks(part, coords, select, tz):
    return geo_hotspots.peak_matrix(_points_kept(part, coords, select)["reported_at"], tz)


def _sum(*arrays):
    return np.sum(arrays, axis=0)


class HotspotParts:
    """The points of a file on a cluster, counted partition by partition: the same answers
    as the in-memory counts of `geo.hotspots` (each count adds up exactly; the metric CRS and
    the lattice come from the extent of all the points, as in memory). `select(points)` keeps
    the points that count (layers.hotspots.select). One pass over the file per question: the
    extent first (and the number of points), then the metric box (squares only), then the
    counts."""

    def __init__(self, client, source: PointFile, select):
        self.client, self.source, self.select = client, source, select
        self.columns = list(source.frame.columns)
        self.n, self._lonlat = self._pass(_extent, _join_extents)
        self._crs = None
        self._pair_tables = None

    def __len__(self) -> int:
        return self.n

    def _pass(self, per_part, combine, *args):
        from dask import delayed

        coords = self.source.coords
        parts = [delayed(per_part)(p, coords, self.select, *args) for p in self.source.frame.to_delayed()]
        return add_up(self.client, parts, combine)

    @property
    def crs(self) -> str:
        if self._crs is None:
            self._crs = geo_hotspots.metric_crs(self.source.points(self.source.frame._meta), self._lonlat)
        return self._crs

    def _lattice(self, cell_m: float, pad_cells: int = 0) -> geo_hotspots.Lattice:
        box = self._pass(_metric_box, _join_boxes, self.crs)
        return geo_hotspots.Lattice.spanning(box, self.crs, cell_m, pad_cells)

    def count_cells(self, cell_m: float, cells=None) -> gpd.GeoDataFrame:
        """`geo.hotspots.count_cells` of all the points."""
        if cells is None:
            lattice = self._lattice(cell_m)
            return lattice.frame(count=self._pass(_raster, _sum, lattice))
        polys = cells.to_crs(self.crs)
        shared = broadcast(self.client, polys.geometry.values)
        return geo_hotspots.cell_counts(polys, self._pass(_in_polygons, _sum, shared, self.crs))

    def kernel_density(self, cell_m: float, bandwidth_m: float) -> geo_hotspots.Surface:
        """`geo.hotspots.kernel_density` of all the points: their rasters summed, then smoothed."""
        lattice = self._lattice(cell_m, geo_hotspots.kde_pad_cells(cell_m, bandwidth_m))
        return geo_hotspots.density_surface(self._pass(_raster, _sum, lattice), lattice, bandwidth_m)

    def counts_by(self, key: str) -> pd.DataFrame:
        """`geo.hotspots.counts_by` (per zone, per unit) from the pairs of every partition; the
        keys the file has are counted in one pass."""
        if self._pair_tables is None:
            keys = [k for k in ("zone_code", "unit_id") if k in self.columns]
            self._pair_tables = self._pass(_pairs, _join_pairs, keys) if keys else {}
        if key not in self._pair_tables:
            raise InputError(f"{self.source.name} has no {key} column to count by")
        return geo_hotspots.counts_from_pairs(self._pair_tables[key], key)

    def time_peaks(self, tz: str) -> dict:
        """`geo.hotspots.time_peaks` from the weekday × hour matrices of every partition."""
        return geo_hotspots.peaks_of(self._pass(_peaks, _sum, tz) if self.n else np.zeros((7, 24), int), tz)

    def repeat_spots(self, k: int, days: float):
        raise InputError("repeats do not scale out here: a spot needs every report of one place and category "
                         "in time order in one piece; run them without --engine dask (on a period that fits "
                         "in memory, --since/--until)")
