"""What the printed documents (unit notices, the monthly bulletin) share: the Chinese font,
HTML from Jinja2 templates (autoescaped), PDF from that same HTML (WeasyPrint), and map
images drawn with matplotlib over the store's own roads and buildings.

One HTML document is both the page a browser shows and the source of the PDF, so the two
cannot drift apart. Text from the data (unit names, addresses) only ever reaches the PDF as
escaped HTML text, never as markup.
"""

from __future__ import annotations

import base64
import io
import math
import shutil
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely

from geo.crs import metric_crs, transformer

from .errors import InputError, ZonemapError

TEMPLATES = Path(__file__).resolve().parent / "templates"
# Fonts with the simplified Chinese glyphs, best first; any other font fontconfig says covers
# Chinese comes after them.
CJK_FAMILIES = ("Noto Sans CJK SC", "Source Han Sans SC", "Source Han Sans CN", "WenQuanYi Zen Hei",
                "WenQuanYi Micro Hei", "Noto Serif CJK SC", "AR PL UMing CN", "AR PL UKai CN")
FONT_HINT = ("install Debian's fonts-noto-cjk and fontconfig (apt-get install fonts-noto-cjk fontconfig; "
             "scripts/setup does it when run as root)")
OSM_CREDIT = "© OpenStreetMap contributors"


@dataclass(frozen=True)
class CjkFont:
    family: str
    file: str


@cache
def cjk_font() -> CjkFont:
    """The Chinese font fontconfig offers (WeasyPrint finds fonts through fontconfig too, so what
    this finds is what the PDF uses). Without one the PDF would show boxes: refuse instead."""
    fc_list = shutil.which("fc-list")
    if fc_list is None:
        raise ZonemapError(f"cannot look for a Chinese font: fontconfig's fc-list is missing; {FONT_HINT}")
    out = subprocess.run([fc_list, ":lang=zh", "family", "file"], capture_output=True, text=True,
                         timeout=60).stdout
    found: dict[str, str] = {}
    for line in out.splitlines():
        file, _, families = line.partition(":")
        for family in families.strip().split(","):
            found.setdefault(family.strip(), file.strip())
    for family in (*CJK_FAMILIES, *sorted(found)):
        if family in found:
            return CjkFont(family, found[family])
    raise ZonemapError(f"no Chinese font is installed, so the PDF would show boxes instead of text; {FONT_HINT}")


# ---- HTML and PDF ------------------------------------------------------------------------

@cache
def _env():
    import jinja2

    return jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def render_html(template: str, **context) -> str:
    """The template filled in; every value is HTML-escaped unless the template says otherwise."""
    return _env().get_template(template).render(font_family=cjk_font().family, **context)


def output_kind(out: Path, allowed: tuple[str, ...]) -> str:
    kind = Path(out).suffix.lower().lstrip(".")
    if kind not in allowed:
        raise InputError(f"--out {out}: the file name must end in {' or '.join('.' + a for a in allowed)}")
    return kind


def write_pdf(html: str, out: Path) -> int:
    """The HTML printed to a PDF at `out`; returns its page count. Only data: URLs (the
    embedded images) are fetched: nothing in a document reaches the network or the disk."""
    try:
        import weasyprint
        from weasyprint.urls import URLFetcher
    except OSError as exc:  # WeasyPrint loads Pango's C library when imported
        raise ZonemapError(f"cannot print PDF: {exc}; install Debian's libpango-1.0-0 and libpangoft2-1.0-0 "
                           "(scripts/setup does it when run as root)") from None

    doc = weasyprint.HTML(string=html, url_fetcher=URLFetcher(allowed_protocols=("data",))).render()
    doc.write_pdf(out)
    return len(doc.pages)


def write_document(html: str, out: Path) -> int:
    """`html` saved as .html, or printed to .pdf; the number of pages (1 for HTML)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".pdf":
        return write_pdf(html, out)
    out.write_text(html, encoding="utf-8")
    return 1


# ---- figures --------------------------------------------------------------------------------

def figure(width_cm: float, height_cm: float):
    """A matplotlib Figure (no pyplot: no global state, safe in a server) using the CJK font."""
    from matplotlib.figure import Figure

    _use_font(cjk_font())
    return Figure(figsize=(width_cm / 2.54, height_cm / 2.54), layout="constrained")


@cache
def _use_font(font: CjkFont) -> None:
    from matplotlib import font_manager, rcParams

    font_manager.fontManager.addfont(font.file)  # matplotlib's font cache may predate the install
    # text objects read the family when made; these documents are all this process draws
    rcParams["font.family"] = [font.family, "DejaVu Sans"]
    rcParams["axes.unicode_minus"] = False


def png_data_uri(fig, dpi: int = 200) -> str:
    """The figure as a PNG data: URL, to embed in a standalone HTML page or the PDF."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, facecolor="white")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


# ---- maps ---------------------------------------------------------------------------------

@dataclass
class Basemap:
    """The store's roads and buildings around a place, in a metric CRS, read once and drawn
    under many small maps (a street's notices share one read)."""

    crs: str
    roads: gpd.GeoDataFrame
    buildings: gpd.GeoDataFrame

    @classmethod
    def read(cls, store, frame: gpd.GeoDataFrame, margin_m: float = 150.0) -> Basemap:
        """Roads and buildings within `margin_m` of `frame` (EPSG:4326)."""
        w, s, e, n = frame.total_bounds
        crs = metric_crs((w + e) / 2, (s + n) / 2)
        box = _grown_lonlat_box((w, s, e, n), crs, margin_m)
        return cls(crs, store.read("roads", bbox=box).to_crs(crs), store.read("buildings", bbox=box).to_crs(crs))


def _grown_lonlat_box(bounds, crs: str, margin_m: float) -> tuple[float, float, float, float]:
    to_m = transformer("EPSG:4326", crs)
    x0, y0, x1, y1 = to_m.transform_bounds(*bounds)
    back = transformer(crs, "EPSG:4326")
    return back.transform_bounds(x0 - margin_m, y0 - margin_m, x1 + margin_m, y1 + margin_m)


def view_box(geoms: gpd.GeoSeries, pad: float = 0.25, min_m: float = 120.0) -> tuple[float, float, float, float]:
    """A box (metric CRS) around `geoms`, padded so neighbours show, at least `min_m` wide."""
    x0, y0, x1, y1 = geoms.total_bounds
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    half = max(x1 - x0, y1 - y0, min_m) * (0.5 + pad)
    return cx - half, cy - half * 0.7, cx + half, cy + half * 0.7


def draw_base(ax, base: Basemap, box) -> bool:
    """Buildings and roads in `box` drawn grey, main roads named; True when any of it came
    from OpenStreetMap (then the map must credit it)."""
    x0, y0, x1, y1 = box
    buildings = base.buildings.cx[x0:x1, y0:y1]
    roads = base.roads.cx[x0:x1, y0:y1]
    if not buildings.empty:
        buildings.plot(ax=ax, color="#dddddd", edgecolor="#bbbbbb", linewidth=0.3, zorder=1)
    if not roads.empty:
        roads.plot(ax=ax, color="#999999", linewidth=1.2, zorder=2)
        _name_roads(ax, roads, shapely.box(*box))
    return any(_from_osm(f) for f in (buildings, roads))


def _from_osm(frame) -> bool:
    if frame.empty:
        return False
    return bool(frame["osm_id"].notna().any() or (frame["source"].fillna("") == "osm").any())


def _name_roads(ax, roads, view, most: int = 8) -> None:
    """Each named road's name once, along its longest piece in view (the 四至 name them)."""
    named = roads[roads["name"].notna() & (roads["name"] != "")]
    if named.empty:
        return
    pieces = gpd.GeoDataFrame({"name": named["name"].to_numpy()},
                              geometry=shapely.intersection(named.geometry.to_numpy(), view), crs=roads.crs)
    pieces = pieces.explode(index_parts=False)
    pieces = pieces[pieces.geometry.geom_type == "LineString"]
    pieces["len"] = pieces.length
    best = pieces.sort_values("len", ascending=False).drop_duplicates("name").head(most)
    for name, line, length in zip(best["name"], best.geometry, best["len"]):
        if length < 40:
            continue
        mid = line.interpolate(0.5, normalized=True)
        a = line.interpolate(max(0.0, 0.5 * length - 5))
        b = line.interpolate(min(length, 0.5 * length + 5))
        angle = math.degrees(math.atan2(b.y - a.y, b.x - a.x))
        angle = angle - 180 if angle > 90 else angle + 180 if angle < -90 else angle
        ax.text(mid.x, mid.y, name, fontsize=6, color="#444444", rotation=angle, rotation_mode="anchor",
                ha="center", va="center", zorder=6, parse_math=False, clip_on=True,
                bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.7})


def finish_map(ax, box, crs: str, credit_osm: bool) -> None:
    """Frame the view; add a scale bar in metres, a north arrow (true north, which differs
    from the grid's by the meridian convergence) and the OpenStreetMap credit when due."""
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    x0, y0, x1, y1 = box
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel("")  # geopandas names the projected axes; a printed map needs no such words
    ax.set_ylabel("")
    size = _nice_length((x1 - x0) / 5)
    ax.add_artist(AnchoredSizeBar(ax.transData, size, f"{size:g} m", loc="lower left", pad=0.4,
                                  sep=3, frameon=True, size_vertical=(y1 - y0) / 150, fontproperties={"size": 7}))
    _north_arrow(ax, box, crs)
    if credit_osm:
        ax.text(0.995, 0.005, OSM_CREDIT, transform=ax.transAxes, fontsize=6, ha="right", va="bottom",
                zorder=7, parse_math=False, bbox={"fc": "white", "ec": "none", "alpha": 0.8, "pad": 1})


def _nice_length(target: float) -> float:
    steps = [s * 10 ** k for k in range(0, 6) for s in (1, 2, 5)]
    return max([s for s in steps if s <= target] or [1])


def _north_arrow(ax, box, crs: str) -> None:
    x0, y0, x1, y1 = box
    length = 0.1 * (y1 - y0)
    tx, ty = x1 - 0.06 * (x1 - x0), y1 - 0.1 * (y1 - y0) - length
    lon, lat = transformer(crs, "EPSG:4326").transform(tx, ty)
    nx, ny = transformer("EPSG:4326", crs).transform(lon, lat + 0.001)
    d = np.array([nx - tx, ny - ty])
    d = d / np.hypot(*d) * length
    ax.annotate("", xy=(tx + d[0], ty + d[1]), xytext=(tx, ty), zorder=7,
                arrowprops={"arrowstyle": "-|>", "color": "black", "lw": 1.5})
    ax.text(tx + d[0] * 1.2, ty + d[1] * 1.2, "北 N", fontsize=7, ha="center", va="bottom", zorder=7,
            bbox={"fc": "white", "ec": "none", "alpha": 0.8, "pad": 1})
