#!/usr/bin/env python3
"""Benchmark of hotspots (run by hand: `.venv/bin/python scripts/bench/hotspots.py`).

1M synthetic problems (a uniform background and a few Gaussian clusters, seeded) on a
20 km square of EPSG:4547 metres, so a 100 m lattice of 200 × 200 cells. In the same run:

- Gi*, analytic: zonemap's `geo.hotspots.hot_spots` (count the points per cell, build the
  queen weights, esda's G_Local, FDR-held levels) beside esda's own `G_Local(star=True)` call
  alone on the same counts and the same weights, made beforehand (the baseline). The z-scores
  must be equal. esda on a libpysal `W` (the older weights class) is timed too.
- Gi* with permutations: ours (esda twice: the hot tail, and the cold tail read from
  max − count) beside one esda call with the same permutations.
- KDE: `geo.hotspots.kernel_density` beside the bare numpy + scipy it is made of
  (`np.histogram2d` then `scipy.ndimage.gaussian_filter`) on the same lattice.

Times are the best of --repeat runs; ratios are ours / baseline.

    scripts/bench/hotspots.py
    scripts/bench/hotspots.py --points 200000 --permutations 99 --repeat 5 --json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

CRS = "EPSG:4547"
X0, Y0, SIDE = 500_000.0, 3_500_000.0, 20_000.0


def synthetic_points(n: int, seed: int = 11):
    """n points: 70 % uniform over the square, 30 % in ten Gaussian clusters (σ 150–600 m)."""
    import geopandas as gpd
    import numpy as np
    import shapely

    rng = np.random.default_rng(seed)
    n_bg = int(n * 0.7)
    xy = [np.column_stack([X0 + rng.uniform(0, SIDE, n_bg), Y0 + rng.uniform(0, SIDE, n_bg)])]
    centres = np.column_stack([X0 + rng.uniform(2000, SIDE - 2000, 10), Y0 + rng.uniform(2000, SIDE - 2000, 10)])
    sizes = rng.multinomial(n - n_bg, np.full(10, 0.1))
    for (cx, cy), k, sigma in zip(centres, sizes, rng.uniform(150, 600, 10)):
        xy.append(np.column_stack([rng.normal(cx, sigma, k), rng.normal(cy, sigma, k)]))
    xy = np.vstack(xy)
    xy = xy[(xy[:, 0] >= X0) & (xy[:, 0] < X0 + SIDE) & (xy[:, 1] >= Y0) & (xy[:, 1] < Y0 + SIDE)]
    return gpd.GeoDataFrame(geometry=shapely.points(xy[:, 0], xy[:, 1]), crs=CRS)


def best_of(fn, repeat: int):
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def run(n: int, permutations: int, repeat: int) -> dict:
    import numpy as np
    from esda.getisord import G_Local
    from libpysal.weights import WSP, lat2SW
    from scipy.ndimage import gaussian_filter

    from geo import hotspots as H

    points = synthetic_points(n)
    cells = H.count_cells(points, cell_m=100)
    lattice = cells.attrs["lattice"]
    weights = H.cell_weights(cells)
    y = cells["count"].to_numpy(float)
    w_old = WSP(lat2SW(lattice.nrows, lattice.ncols, criterion="queen")).to_W(silence_warnings=True)
    out = {"points": len(points), "cells": len(cells), "grid": [lattice.nrows, lattice.ncols],
           "permutations": permutations, "repeat": repeat}

    ours_t, ours = best_of(lambda: H.hot_spots(points, cell_m=100), repeat)
    esda_t, base = best_of(lambda: G_Local(y, weights, transform="B", star=True, permutations=0), repeat)
    w_t, _ = best_of(lambda: G_Local(y, w_old, transform="B", star=True, permutations=0), repeat)
    assert np.allclose(ours["gi_z"].to_numpy(), np.nan_to_num(base.Zs)), "our z-scores differ from esda's"
    spots = ours["spot"].value_counts().to_dict()
    out["gi_analytic"] = {"ours_s": ours_t, "esda_graph_s": esda_t, "esda_W_s": w_t, "ratio": ours_t / esda_t,
                          "spots": spots}

    if permutations:
        perm_t, _ = best_of(lambda: H.gi_star(cells, weights, permutations=permutations, seed=1), repeat)
        base_t, _ = best_of(lambda: G_Local(y, weights, transform="B", star=True, permutations=permutations, seed=1,
                                            n_jobs=1, keep_simulations=False), repeat)
        out["gi_permutations"] = {"ours_s": perm_t, "esda_s": base_t, "ratio": perm_t / base_t}

    bandwidth = 200.0
    kde_t, surface = best_of(lambda: H.kernel_density(points, cell_m=100, bandwidth_m=bandwidth), repeat)
    lat = surface.lattice
    x, yy = np.asarray(points.geometry.x), np.asarray(points.geometry.y)

    def bare():
        edges_x = lat.west + 100 * np.arange(lat.ncols + 1)
        edges_y = lat.north - 100 * np.arange(lat.nrows + 1)[::-1]
        raster, _, _ = np.histogram2d(yy, x, bins=[edges_y, edges_x])
        return gaussian_filter(raster[::-1], sigma=bandwidth / 100, mode="constant") * 100.0

    bare_t, dens = best_of(bare, repeat)
    assert np.allclose(dens, surface.density), "our surface differs from the bare one"
    out["kde"] = {"ours_s": kde_t, "bare_s": bare_t, "ratio": kde_t / bare_t, "bandwidth_m": bandwidth,
                  "grid": [lat.nrows, lat.ncols]}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--points", type=int, default=1_000_000)
    ap.add_argument("--permutations", type=int, default=99)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    r = run(args.points, args.permutations, args.repeat)
    if args.json:
        print(json.dumps(r, indent=2))
        return
    g = r["gi_analytic"]
    print(f"{r['points']:,} points, {r['cells']:,} cells ({r['grid'][0]} × {r['grid'][1]} of 100 m), "
          f"best of {r['repeat']}")
    print(f"Gi* analytic   ours {g['ours_s']:.3f} s | esda G_Local alone {g['esda_graph_s']:.3f} s (Graph), "
          f"{g['esda_W_s']:.3f} s (W) | ratio {g['ratio']:.2f}")
    print(f"               spots: {g['spots']}")
    if "gi_permutations" in r:
        p = r["gi_permutations"]
        print(f"Gi* {r['permutations']} perms ours {p['ours_s']:.3f} s | esda alone {p['esda_s']:.3f} s | "
              f"ratio {p['ratio']:.2f}")
    k = r["kde"]
    print(f"KDE σ {k['bandwidth_m']:g} m  ours {k['ours_s']:.3f} s | histogram2d + gaussian_filter "
          f"{k['bare_s']:.3f} s | ratio {k['ratio']:.2f}")


if __name__ == "__main__":
    main()
