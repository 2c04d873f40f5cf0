"""Where problems concentrate: counts per cell, a kernel density surface, Getis–Ord Gi* hot
and cold spots, repeat spots, and peaks by hour of day and day of week.

CRS: point arguments are GeoDataFrames/GeoSeries with their CRS set (EPSG:4326 as stored, or
any other). Metric work happens in `metric_crs(points)`: the points' own CRS when it is
projected in metres, else `geo.crs.metric_crs` of their centre (the CGCS2000 Gauss–Krüger zone
in China, UTM elsewhere). Cells, surfaces and spots come back in that metric CRS; callers
reproject for storage or the map.

The statistics are esda's and libpysal's, not our own: Gi* is `esda.G_Local(star=True)` on
binary weights from libpysal (queen contiguity of the cells, or a distance band), and the
multiple-testing correction is `esda.fdr` (Benjamini–Hochberg). See docs/hotspots.md for why.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from .crs import metric_crs as _metric_crs_at

#: (two-sided significance, the spot's level) from the strictest down
LEVELS = ((0.01, "99"), (0.05, "95"), (0.10, "90"))
NOT_SIGNIFICANT = "ns"
MAX_CELLS = 4_000_000  # a 200 km square of 100 m cells: more means a stray point or a tiny cell
REPEAT_CELL_M = 30.0  # "the same place" when a report has no zone
KDE_TRUNCATE = 4.0  # the Gaussian kernel is cut at 4 σ (scipy's default)


# ---- metric coordinates and the square lattice -------------------------------------------

def lonlat_bounds(points: gpd.GeoDataFrame | gpd.GeoSeries) -> np.ndarray:
    """(west, south, east, north) of the points in longitude/latitude (NaN when there are none)."""
    return points.geometry.to_crs("EPSG:4326").total_bounds


def metric_crs(points: gpd.GeoDataFrame | gpd.GeoSeries, bounds=None) -> str:
    """The CRS to measure `points` in: their own when projected in metres, else the local
    Gauss–Krüger/UTM zone of the centre of their extent (`bounds`: that extent in lon/lat,
    `lonlat_bounds`, when it is known already, e.g. summed over the parts of a large file)."""
    crs = points.crs
    if crs is None:
        raise ValueError("the points have no CRS; set one (EPSG:4326 for longitude/latitude)")
    if crs.is_projected and crs.axis_info[0].unit_name in ("metre", "meter"):
        return crs.to_string()
    w, s, e, n = lonlat_bounds(points) if bounds is None else bounds
    if not np.isfinite([w, s, e, n]).all():
        return "EPSG:3857"  # no points: any metric CRS will do, nothing is measured
    return _metric_crs_at((w + e) / 2, (s + n) / 2)


def metric_xy(points: gpd.GeoDataFrame | gpd.GeoSeries, crs: str | None = None):
    """(x, y, crs): the points' coordinates in metres, in `crs` or `metric_crs(points)`."""
    crs = crs or metric_crs(points)
    geoms = points.geometry.to_crs(crs)
    return shapely.get_x(geoms.values), shapely.get_y(geoms.values), crs


@dataclass(frozen=True)
class Lattice:
    """A regular grid of square cells of `cell_m` metres in a metric CRS. Cell ids run
    row-major from the north-west corner (row 0 is the northernmost), as rasters do and as
    libpysal's lattice weights (`lat2SW`) number them. Its corner sits on a multiple of
    `cell_m`, so the same cell has the same place in every query."""

    crs: str
    west: float
    north: float
    cell_m: float
    nrows: int
    ncols: int

    @classmethod
    def covering(cls, x: np.ndarray, y: np.ndarray, crs: str, cell_m: float, pad_cells: int = 0) -> Lattice:
        """The smallest lattice holding every (x, y) (metres), `pad_cells` wider on each side."""
        if len(x) == 0:
            raise ValueError("no points to grid")
        return cls.spanning((x.min(), y.min(), x.max(), y.max()), crs, cell_m, pad_cells)

    @classmethod
    def spanning(cls, bounds, crs: str, cell_m: float, pad_cells: int = 0) -> Lattice:
        """The smallest lattice holding the box `bounds` (xmin, ymin, xmax, ymax in metres),
        `pad_cells` wider on each side: the lattice `covering` points with those bounds."""
        if not cell_m > 0:
            raise ValueError(f"the cell size must be positive metres, not {cell_m!r}")
        xmin, ymin, xmax, ymax = bounds
        west = (math.floor(xmin / cell_m) - pad_cells) * cell_m
        south = (math.floor(ymin / cell_m) - pad_cells) * cell_m
        ncols = math.floor((xmax - west) / cell_m) + 1 + pad_cells
        nrows = math.floor((ymax - south) / cell_m) + 1 + pad_cells
        if ncols * nrows > MAX_CELLS:
            raise ValueError(f"{ncols} × {nrows} cells of {cell_m:g} m is more than {MAX_CELLS:,}: "
                             "the points spread too far (a stray point?) or the cells are too small")
        return cls(crs, west, south + nrows * cell_m, float(cell_m), nrows, ncols)

    @property
    def transform(self) -> tuple[float, float, float, float, float, float]:
        """The GDAL geotransform (west, cell, 0, north, 0, −cell) of a raster on this lattice."""
        return (self.west, self.cell_m, 0.0, self.north, 0.0, -self.cell_m)

    def rows_cols(self, x: np.ndarray, y: np.ndarray):
        """Row and column of each (x, y) in metres (outside: past the edges, not clipped)."""
        return (np.floor((self.north - y) / self.cell_m).astype(np.int64),
                np.floor((x - self.west) / self.cell_m).astype(np.int64))

    def raster(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Points per cell as an (nrows, ncols) array."""
        r, c = self.rows_cols(x, y)
        flat = np.bincount(r * self.ncols + c, minlength=self.nrows * self.ncols)
        return flat.reshape(self.nrows, self.ncols)

    def polygons(self) -> np.ndarray:
        """The cells as shapely squares, in cell-id order."""
        r, c = np.divmod(np.arange(self.nrows * self.ncols), self.ncols)
        x0, y1 = self.west + c * self.cell_m, self.north - r * self.cell_m
        x1, y0 = x0 + self.cell_m, y1 - self.cell_m
        rings = np.stack([np.stack(corner, axis=-1) for corner in
                          ((x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0))], axis=1)
        return shapely.polygons(rings)  # ten times faster than shapely.box for many cells

    def frame(self, **columns) -> gpd.GeoDataFrame:
        """Every cell as a row: `cell_id` ("E<x>N<y>" of its south-west corner in metres, stable
        across queries), `row`, `col`, the given per-cell columns, the square (this CRS)."""
        r, c = np.divmod(np.arange(self.nrows * self.ncols), self.ncols)
        x0 = (self.west + c * self.cell_m).round().astype(np.int64)
        y0 = (self.north - (r + 1) * self.cell_m).round().astype(np.int64)
        ids = pd.Series(x0).astype(str).radd("E") + pd.Series(y0).astype(str).radd("N")
        data = {"cell_id": ids.to_numpy(), "row": r, "col": c,
                **{k: np.asarray(v).ravel() for k, v in columns.items()}}
        out = gpd.GeoDataFrame(data, geometry=self.polygons(), crs=self.crs)
        out.attrs["lattice"] = self
        return out


# ---- counts ------------------------------------------------------------------------------

def count_cells(points: gpd.GeoDataFrame, cell_m: float = 100.0, cells: gpd.GeoDataFrame | None = None,
                cell_id: str = "code") -> gpd.GeoDataFrame:
    """Points per cell, every cell included (empty ones with 0: Gi* needs them).

    `cells`: polygons to count in (the 单元网格 layer, any CRS; `cell_id` names their id
    column); points in none of them are not counted. Without them: a square lattice of
    `cell_m` metres over the points' extent (`Lattice.frame` columns, `attrs["lattice"]`).
    Returns the cells in the metric CRS with `cell_id` and `count`."""
    x, y, crs = metric_xy(points)
    if cells is None:
        lattice = Lattice.covering(x, y, crs, cell_m)
        return lattice.frame(count=lattice.raster(x, y))
    polys = cells.to_crs(crs)
    return cell_counts(polys, counts_in(polys.geometry.values, x, y), cell_id)


def counts_in(polygons: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Points (x, y) per polygon (same CRS), in the polygons' order; a point on a shared edge
    counts once (in the first), one outside every polygon nowhere. Counts of parts add up."""
    inside, which = shapely.STRtree(polygons).query(shapely.points(x, y), predicate="intersects")
    first = pd.Series(which, index=inside).groupby(level=0).min()
    return np.bincount(first.to_numpy(), minlength=len(polygons))


def cell_counts(polys: gpd.GeoDataFrame, counts: np.ndarray, cell_id: str = "code") -> gpd.GeoDataFrame:
    """The `count_cells` frame of polygon cells (metric CRS) and their counts (`counts_in`)."""
    return gpd.GeoDataFrame({"cell_id": polys[cell_id].astype(str).to_numpy(), "count": counts},
                            geometry=polys.geometry.values, crs=polys.crs)


def counts_by(cases: pd.DataFrame, key: str, category: str = "category") -> pd.DataFrame:
    """Cases per value of `key` (a zone_code, a unit_id), most first, with the number of
    categories among them and the most frequent one (on a tie, the smallest code). Cases
    without a `key` are left out."""
    return counts_from_pairs(pair_counts(cases, key, category), key, category)


def pair_counts(cases: pd.DataFrame, key: str, category: str = "category") -> pd.DataFrame:
    """Cases per (`key`, `category`) pair (a missing category is a pair too) as columns key,
    category and n: what `counts_by` is made of. Tables of parts of the cases add up
    (concatenate, then sum n per pair)."""
    have = cases[cases[key].notna()]
    return have.groupby([key, category], dropna=False, sort=False).size().rename("n").reset_index()


def counts_from_pairs(pairs: pd.DataFrame, key: str, category: str = "category") -> pd.DataFrame:
    """`counts_by`'s table from `pair_counts` (of all the cases, or of their parts concatenated)."""
    if pairs.empty:
        return pd.DataFrame({key: [], "count": [], "categories": [], "top_category": []})
    pairs = pairs.groupby([key, category], dropna=False, sort=False)["n"].sum().reset_index()
    total = pairs.groupby(key, sort=False)["n"].sum()
    named = pairs[pairs[category].notna()]
    top = named.sort_values([key, "n", category], ascending=[True, False, True]).drop_duplicates(key)
    out = pd.DataFrame({"count": total,
                        "categories": named.groupby(key).size().reindex(total.index, fill_value=0),
                        "top_category": top.set_index(key)[category].reindex(total.index).astype(object)})
    out["top_category"] = out["top_category"].where(out["top_category"].notna(), None)
    out.index.name = key
    return out.reset_index().sort_values(["count", key], ascending=[False, True], ignore_index=True)


# ---- kernel density ----------------------------------------------------------------------

@dataclass(frozen=True)
class Surface:
    """A density raster: `density[row, col]` in points per km² on `lattice`."""

    density: np.ndarray
    lattice: Lattice

    @property
    def transform(self):
        return self.lattice.transform

    def cells(self, min_share: float = 0.0) -> gpd.GeoDataFrame:
        """The cells (metric CRS) with `density` (per km²) of at least `min_share` × the peak."""
        frame = self.lattice.frame(density=self.density)
        peak = float(self.density.max()) if self.density.size else 0.0
        keep = frame["density"] > 0 if min_share <= 0 else frame["density"] >= min_share * peak
        return frame[keep.to_numpy()].reset_index(drop=True)


def kernel_density(points: gpd.GeoDataFrame, cell_m: float = 100.0, bandwidth_m: float = 200.0) -> Surface:
    """A Gaussian kernel density surface of the points: the points binned on a `cell_m` lattice
    (padded by four bandwidths, where the filter's kernel ends, so no mass falls off the edge) and smoothed with
    `scipy.ndimage.gaussian_filter` of σ = `bandwidth_m` (the binned KDE; exact to within a
    cell). Density in points per km²; the lattice is in the metric CRS."""
    x, y, crs = metric_xy(points)
    lattice = Lattice.covering(x, y, crs, cell_m, pad_cells=kde_pad_cells(cell_m, bandwidth_m))
    return density_surface(lattice.raster(x, y), lattice, bandwidth_m)


def kde_pad_cells(cell_m: float, bandwidth_m: float) -> int:
    """How many cells the density lattice reaches past the points: four bandwidths."""
    if not bandwidth_m > 0:
        raise ValueError(f"the bandwidth must be positive metres, not {bandwidth_m!r}")
    return math.ceil(KDE_TRUNCATE * bandwidth_m / cell_m)


def density_surface(raster: np.ndarray, lattice: Lattice, bandwidth_m: float) -> Surface:
    """The `kernel_density` surface of points binned on `lattice` (`Lattice.raster`, or the
    sum of the rasters of parts of the points): smoothed, in points per km²."""
    from scipy.ndimage import gaussian_filter

    smooth = gaussian_filter(raster.astype(float), sigma=bandwidth_m / lattice.cell_m, mode="constant",
                             truncate=KDE_TRUNCATE)
    return Surface(smooth * (1e6 / lattice.cell_m ** 2), lattice)


# ---- Getis–Ord Gi* -----------------------------------------------------------------------

def cell_weights(cells: gpd.GeoDataFrame, band_m: float | None = None):
    """Binary libpysal weights between `cells` (metric CRS), without self-weights (Gi* adds them).

    Default: queen contiguity (cells sharing an edge or a corner): libpysal's lattice weights
    for a square lattice, its polygon contiguity for other cells. With `band_m`: every cell
    whose centre lies within `band_m` metres of the cell's centre (a distance band)."""
    from libpysal.graph import Graph

    ids = np.arange(len(cells))
    if band_m is not None:
        if not band_m > 0:
            raise ValueError(f"the distance band must be positive metres, not {band_m!r}")
        centres = cells.geometry.centroid
        return Graph.build_distance_band(gpd.GeoSeries(centres.values, index=ids, crs=cells.crs), band_m)
    lattice = cells.attrs.get("lattice")
    if lattice is not None and len(cells) == lattice.nrows * lattice.ncols:
        from libpysal.weights import lat2SW

        return Graph.from_sparse(lat2SW(lattice.nrows, lattice.ncols, criterion="queen"), ids=ids)
    return Graph.build_contiguity(cells.set_axis(ids), rook=False)


def gi_star(cells: gpd.GeoDataFrame, weights=None, count: str = "count", permutations: int = 0, seed: int = 0,
            correction: str = "fdr") -> gpd.GeoDataFrame:
    """Getis–Ord Gi* of each cell's `count`: `cells` with `gi_z` (the z-score), `gi_p` (its
    two-sided p-value) and `spot`: "hot99"/"hot95"/"hot90", "cold99"/…, or "ns".

    `weights`: libpysal W or Graph aligned with `cells` (default `cell_weights(cells)`).
    p-values are analytic (normal) with `permutations=0`, else conditional permutation
    pseudo-p-values from that many permutations drawn from `seed` (the smallest possible
    two-sided p is 2/(permutations+1): 999 are needed to reach 99 %). `correction="fdr"`
    holds the false discovery rate at each level across all cells (esda.fdr,
    Benjamini–Hochberg); "none" tests each cell alone (with 40,000 cells, 4,000 of them
    "significant at 90 %" by chance alone). CRS: unchanged."""
    if correction not in ("fdr", "none"):
        raise ValueError(f"correction must be 'fdr' or 'none', not {correction!r}")
    y = cells[count].to_numpy(dtype=float)
    out = cells.copy()
    out.attrs = cells.attrs
    if len(y) < 3 or np.ptp(y) == 0:  # nothing to compare: no cell stands out
        return out.assign(gi_z=0.0, gi_p=1.0, spot=NOT_SIGNIFICANT)
    w = cell_weights(cells) if weights is None else weights
    g = _g_local(y, w, permutations, seed)
    z = np.nan_to_num(np.asarray(g.Zs, dtype=float), nan=0.0)
    if permutations:
        # esda's pseudo p-value counts ties as "at least as extreme" only upwards; counts are
        # full of ties (zeros), so a cold tail read from it would call every empty stretch a
        # 99 % cold spot. The low tail of the counts is the high tail of (max − count): ask
        # esda that, and take each cell's p from the side its z points to.
        low = _g_local(y.max() - y, w, permutations, seed)
        one_sided = np.where(z >= 0, g.p_sim, low.p_sim)
    else:
        one_sided = g.p_norm
    p = np.minimum(1.0, 2 * np.nan_to_num(np.asarray(one_sided, dtype=float), nan=0.5))
    return out.assign(gi_z=z, gi_p=p, spot=classify(z, p, correction))


def _g_local(y: np.ndarray, w, permutations: int, seed: int):
    """esda's Gi* on binary weights (self-weight 1), permutations drawn from `seed`."""
    from esda.getisord import G_Local

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # islands: 0/0 where a cell has no neighbours
        warnings.simplefilter("ignore", DeprecationWarning)  # esda's notice of a future default: handled above
        return G_Local(y, w, transform="B", star=True, permutations=permutations, seed=seed, n_jobs=1,
                       keep_simulations=False)


def classify(z: np.ndarray, p: np.ndarray, correction: str = "fdr") -> np.ndarray:
    """"hot99" … "cold90" or "ns" from z-scores and two-sided p-values, at the strictest level
    each cell passes; with "fdr" the cut-off of each level is esda.fdr's."""
    from esda import fdr

    spot = np.full(len(z), NOT_SIGNIFICANT, dtype=object)
    for alpha, level in reversed(LEVELS):  # the loosest first, so stricter levels overwrite
        cut = fdr(p, alpha) if correction == "fdr" else alpha
        passed = p < cut if correction == "fdr" else p <= cut
        spot[passed & (z > 0)] = "hot" + level
        spot[passed & (z < 0)] = "cold" + level
    return spot


def hot_spots(points: gpd.GeoDataFrame, cell_m: float = 100.0, cells: gpd.GeoDataFrame | None = None,
              band_m: float | None = None, permutations: int = 0, seed: int = 0, correction: str = "fdr",
              cell_id: str = "code") -> gpd.GeoDataFrame:
    """Count the points per cell (`count_cells`) and run Gi* on the counts (`gi_star`) with
    queen or distance-band weights (`cell_weights`). Points: any CRS; cells: metric CRS."""
    return gi_cells(count_cells(points, cell_m=cell_m, cells=cells, cell_id=cell_id), band_m=band_m,
                    permutations=permutations, seed=seed, correction=correction)


def gi_cells(counted: gpd.GeoDataFrame, band_m: float | None = None, permutations: int = 0, seed: int = 0,
             correction: str = "fdr") -> gpd.GeoDataFrame:
    """Gi* (`gi_star`) of cells already counted (`count_cells`, or counts summed over parts of
    the points) with queen or distance-band weights (`cell_weights`)."""
    return gi_star(counted, cell_weights(counted, band_m), permutations=permutations, seed=seed,
                   correction=correction)


# ---- repeat spots ------------------------------------------------------------------------

def repeat_spots(reports: gpd.GeoDataFrame, k: int = 3, days: float = 30.0, place: str | None = "zone_code",
                 category: str = "category", time: str = "reported_at",
                 cell_m: float = REPEAT_CELL_M) -> gpd.GeoDataFrame:
    """Places where the same category was reported at least `k` times within `days` days.

    A place is the report's `place` column (its zone) where it has one, else the `cell_m`
    metre square it lies in (metric CRS). For each place and category the densest window of
    `days` is found: `count` reports in it, from `first` to `last` (the reports' own times);
    `total` is every report of that place and category. Returns one row per spot, most
    reports first, with `place`, `category`, `count`, `total`, `first`, `last` and the centre
    of the spot's reports as geometry (metric CRS)."""
    if k < 2 or not days > 0:
        raise ValueError("a repeat needs k ≥ 2 reports within a positive number of days")
    x, y, crs = metric_xy(reports)
    at = pd.to_datetime(reports[time], utc=True).dt.tz_localize(None)  # naive UTC: numpy sorts and adds it
    cell = ("cell:E" + (np.floor(x / cell_m) * cell_m).astype(np.int64).astype(str)
            + "N" + (np.floor(y / cell_m) * cell_m).astype(np.int64).astype(str))
    own = reports[place].to_numpy(dtype=object) if place and place in reports else np.full(len(reports), None)
    keys = np.where(pd.isna(own), cell, own)
    frame = pd.DataFrame({"place": keys, "category": reports[category].fillna("").to_numpy(), "at": at.to_numpy(),
                          "x": x, "y": y})
    frame = frame[frame["at"].notna().to_numpy()].sort_values(["place", "category", "at"], ignore_index=True)
    rows = [_densest(g, k, pd.Timedelta(days=days)) for _, g in frame.groupby(["place", "category"], sort=False)
            if len(g) >= k]
    rows = [r for r in rows if r is not None]
    cols = ["place", "category", "count", "total", "first", "last"]
    table = pd.DataFrame(rows, columns=[*cols, "x", "y"])
    if table.empty:
        return gpd.GeoDataFrame(table[cols], geometry=gpd.GeoSeries([], crs=crs), crs=crs)
    table = table.sort_values(["count", "total", "place", "category"], ascending=[False, False, True, True],
                              ignore_index=True)
    return gpd.GeoDataFrame(table[cols], geometry=shapely.points(table["x"], table["y"]), crs=crs)


def _densest(group: pd.DataFrame, k: int, window: pd.Timedelta):
    """The window of one place and category holding the most reports, if it holds ≥ k."""
    t = group["at"].to_numpy()
    ends = np.searchsorted(t, t + window.to_timedelta64(), side="right")  # reports in [t_i, t_i + window]
    sizes = ends - np.arange(len(t))
    i = int(np.argmax(sizes))
    if sizes[i] < k:
        return None
    j = ends[i] - 1
    return (group["place"].iat[0], group["category"].iat[0], int(sizes[i]), len(t),
            pd.Timestamp(t[i], tz="UTC"), pd.Timestamp(t[j], tz="UTC"),
            float(group["x"].mean()), float(group["y"].mean()))


# ---- peaks in time -----------------------------------------------------------------------

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def time_peaks(times, tz: str) -> dict:
    """Reports by hour of day and day of week in the city's time zone `tz` (an IANA name).

    `times`: instants (tz-aware, or naive UTC). Returns `by_hour` (24 counts, hour 0 first),
    `by_weekday` (7 counts, Monday first), `matrix` (7 × 24: weekday × hour), `peak_hour`,
    `peak_weekday` (0 = Monday; None when there are no times) and `total`."""
    return peaks_of(peak_matrix(times, tz), tz)


def peak_matrix(times, tz: str) -> np.ndarray:
    """Reports per weekday (rows, Monday first) and hour (columns) in `tz`: a 7 × 24 array;
    the matrices of parts of the reports add up."""
    at = pd.to_datetime(pd.Series(times), utc=True).dropna().dt.tz_convert(tz)
    hours, days = at.dt.hour.to_numpy(), at.dt.day_of_week.to_numpy()
    return np.bincount(days * 24 + hours, minlength=7 * 24).reshape(7, 24)


def peaks_of(matrix: np.ndarray, tz: str) -> dict:
    """`time_peaks`' answer from a `peak_matrix`."""
    by_hour, by_weekday = matrix.sum(axis=0), matrix.sum(axis=1)
    total = int(matrix.sum())
    empty = total == 0
    return {"tz": tz, "total": total, "by_hour": by_hour.tolist(), "by_weekday": by_weekday.tolist(),
            "matrix": matrix.tolist(), "peak_hour": None if empty else int(by_hour.argmax()),
            "peak_weekday": None if empty else int(by_weekday.argmax())}
