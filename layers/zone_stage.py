"""The staging file of one `zones generate` run: a temporary SQLite file (beside a GeoPackage
store, else in the system's temporary folder) that holds what the tiles give back until the
run moves it into the store at the end, in short transactions (`layers.zones._move_in`). So
the store's write lock is held only for those moves, never while tiles are drawn, and memory
holds one tile's zones, not the city's; the file is removed when the run ends.

It holds the first pass's owner zones (metric WKB, with an R-tree of their boxes, so the
second pass of a tile finds every zone that comes near it; their other columns as one frame
per tile), the rows each tile will write (a frame per tile, in tile order), and the units
they name (each once)."""

from __future__ import annotations

import pickle
import sqlite3
import tempfile
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely


class Stage:
    """A staging file for one run; a context manager that removes it on the way out."""

    def __init__(self, beside: Path | None = None):
        self._dir = tempfile.TemporaryDirectory(prefix=".zonemap-stage-", dir=beside)
        self.path = Path(self._dir.name) / "stage.sqlite"
        self.con = sqlite3.connect(self.path, isolation_level=None)
        # a scratch file: nothing here must survive a crash, so no journal and no syncs
        self.con.execute("PRAGMA journal_mode = OFF")
        self.con.execute("PRAGMA synchronous = OFF")
        self.con.executescript("""
            CREATE TABLE owners (id INTEGER PRIMARY KEY, tile INTEGER NOT NULL, pos INTEGER NOT NULL,
                                 geom BLOB NOT NULL);
            CREATE TABLE owner_data (tile INTEGER PRIMARY KEY, data BLOB NOT NULL);
            CREATE VIRTUAL TABLE owners_box USING rtree(id, minx, maxx, miny, maxy);
            CREATE TABLE rows (tile INTEGER PRIMARY KEY, n INTEGER NOT NULL, data BLOB NOT NULL);
            CREATE TABLE units (unit_id TEXT PRIMARY KEY, data BLOB NOT NULL);
        """)
        self.crs = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        self.con.close()
        self._dir.cleanup()

    def add_owner_zones(self, tile: int, zones: gpd.GeoDataFrame) -> None:
        """The owner zones a tile drew (metric), kept for the second pass of every tile: each
        zone's shape and box on a row of its own, the other columns as one frame per tile."""
        if zones.empty:
            return
        self.crs = zones.crs
        geoms = zones.geometry.to_numpy()
        wkb = shapely.to_wkb(geoms)
        b = shapely.bounds(geoms)
        data = pd.DataFrame(zones.drop(columns=zones.geometry.name)).reset_index(drop=True)
        first = self.con.execute("SELECT coalesce(max(id), 0) + 1 FROM owners").fetchone()[0]
        ids = range(first, first + len(zones))
        self.con.execute("BEGIN")
        self.con.execute("INSERT INTO owner_data VALUES (?, ?)", (tile, pickle.dumps(data)))
        self.con.executemany("INSERT INTO owners VALUES (?, ?, ?, ?)",
                             [(i, tile, k, w) for k, (i, w) in enumerate(zip(ids, wkb))])
        self.con.executemany("INSERT INTO owners_box VALUES (?, ?, ?, ?, ?)",
                             [(i, x0, x1, y0, y1) for i, (x0, y0, x1, y1) in zip(ids, b.tolist())])
        self.con.execute("COMMIT")

    def owner_zones_near(self, bounds, tile: int) -> gpd.GeoDataFrame:
        """The owner zones whose box meets `bounds` (minx, miny, maxx, maxy, metric), in the
        order they were added, with `mine`: whether the tile numbered `tile` drew it."""
        x0, y0, x1, y1 = bounds
        got = self.con.execute(
            "SELECT o.tile, o.pos, o.geom FROM owners_box b JOIN owners o ON o.id = b.id "
            "WHERE b.maxx >= ? AND b.minx <= ? AND b.maxy >= ? AND b.miny <= ? ORDER BY o.id",
            (x0, x1, y0, y1)).fetchall()
        if not got:
            return gpd.GeoDataFrame({"owner": [], "kind": [], "mine": np.array([], dtype=bool)},
                                    geometry=gpd.GeoSeries([], crs=self.crs))
        tiles = np.array([t for t, _, _ in got])
        pos = np.array([k for _, k, _ in got])
        parts = []
        for t in np.unique(tiles):  # ascending, as the ids are
            (data,) = self.con.execute("SELECT data FROM owner_data WHERE tile = ?", (int(t),)).fetchone()
            parts.append(pickle.loads(data).iloc[pos[tiles == t]])
        frame = pd.concat(parts, ignore_index=True)
        frame["mine"] = tiles == tile
        geoms = shapely.from_wkb(np.array([g for _, _, g in got], dtype=object))
        return gpd.GeoDataFrame(frame, geometry=gpd.GeoSeries(geoms, crs=self.crs))

    def add_rows(self, tile: int, rows: pd.DataFrame, units: dict) -> None:
        """The rows a tile will write (a frame, EPSG:4326 shapes in `geometry`, settled codes
        and versions) and the units they name."""
        self.con.execute("BEGIN")
        if len(rows):  # the geometries as WKB in one call, the rest as one frame
            wkb = shapely.to_wkb(rows["geometry"].to_numpy())
            plain = rows.drop(columns="geometry").reset_index(drop=True)
            self.con.execute("INSERT INTO rows VALUES (?, ?, ?)", (tile, len(rows), pickle.dumps((plain, wkb))))
        self.con.executemany("INSERT OR IGNORE INTO units VALUES (?, ?)",
                             [(k, pickle.dumps(u)) for k, u in units.items()])
        self.con.execute("COMMIT")

    def rows(self):
        """Each tile's rows as a frame, in tile order (one tile in memory at a time)."""
        for (data,) in self.con.execute("SELECT data FROM rows ORDER BY tile"):
            plain, wkb = pickle.loads(data)
            plain["geometry"] = shapely.from_wkb(wkb)
            yield plain

    def units(self, size: int = 5000):
        """The units named, in pages of `size` (in the order first met)."""
        cur = self.con.execute("SELECT data FROM units ORDER BY rowid")
        while page := cur.fetchmany(size):
            yield [pickle.loads(d) for (d,) in page]
