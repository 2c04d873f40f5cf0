"""Unit notices (告知书) on real zones drawn from the Nanjing extract: the PDF a street office
prints, read back with pypdf (pages, images, text, fonts), and the HTML page."""

import datetime as dt
import re

import pytest
from pypdf import PdfReader

from layers import zones
from layers.importer import import_osm
from layers.printing import cjk_font
from layers.store import open_store
from tests.conftest import run_cli

BBOX = (118.776, 32.038, 118.786, 32.046)  # around 新街口 / 石鼓路: some 150 frontage zones
HOSTILE = "<b>甲</b>商店 & <script>"
AS_OF = "2026-03-01"


def _flat(text: str) -> str:
    return re.sub(r"\s+", "", text)


def _images(page) -> int:
    return len(page.images)


def _font_names(reader: PdfReader) -> set[str]:
    names = set()
    for page in reader.pages:
        for font in (page["/Resources"].get("/Font") or {}).values():
            names.add(re.sub(r"[^a-z]", "", str(font.get_object()["/BaseFont"]).lower().split("+")[-1]))
    return names


@pytest.fixture(scope="module")
def city(module_store_url, nanjing_osm):
    """A store of each kind with the real extract's buildings and roads, zones in force from
    2026-01-01, and one unit named with markup, with its person and phone filled in: made once
    per store kind (printing a notice writes nothing to the store)."""
    with open_store(module_store_url) as s:
        import_osm(s, nanjing_osm, bbox=BBOX)
        zones.generate(s, "beijing-2022", valid_from=dt.date(2026, 1, 1))
        z = zones.current(s.read("zones"))
        units = s.read("units").set_index("unit_id")
        unit_id = z[z["kind"] == "frontage"].sort_values("area_m2")["primary_unit"].iloc[-1]
        with s.transaction() as tx:
            tx.update("units", int(units.loc[unit_id, "fid"]),
                      {"name": HOSTILE, "person": "王小明", "phone": "025-84001234"})
    return module_store_url, unit_id, z


def test_a_units_notice_has_its_map_words_and_seal_lines_in_chinese(city, tmp_path):
    db, unit_id, z = city
    out = tmp_path / "notice.pdf"
    done = run_cli("notice", "--unit", unit_id, "--out", out, "--as-of", AS_OF, "--json", db=db, check=True)
    assert '"pages": 1' in done.stdout
    reader = PdfReader(out)
    assert len(reader.pages) == 1
    page = reader.pages[0]
    assert _images(page) >= 1  # the map
    text = _flat(page.extract_text())
    mine = z[z["primary_unit"] == unit_id]
    assert _flat(HOSTILE) in text  # the name drawn as text, markup and all
    for code, bounds in zip(mine["code"], mine["bounds_text"]):
        assert code in text
        assert _flat(bounds.split("；")[0]) in text  # 东至…: the 四至 words themselves
    for words in ("门前三包责任告知书", "东至", "西至", "南至", "北至", "责任单位（盖章）", "街道办事处（盖章）",
                  "日期：", "王小明", "025-84001234", "自2026-01-01起", "卫生", "容貌", "秩序"):
        assert words in text, words
    # every character is drawn with the CJK font (embedded), none with a fallback's boxes
    family = re.sub(r"[^a-z]", "", cjk_font().family.lower())
    assert all(name.startswith(family) for name in _font_names(reader)), _font_names(reader)


def test_the_html_notice_escapes_a_units_markup(city, tmp_path):
    db, unit_id, _ = city
    out = tmp_path / "notice.html"
    run_cli("notice", "--unit", unit_id, "--out", out, "--as-of", AS_OF, db=db, check=True)
    html = out.read_text("utf-8")
    assert "&lt;b&gt;甲&lt;/b&gt;商店 &amp; &lt;script&gt;" in html
    assert "<b>甲" not in html and "<script>" not in html
    assert html.count('src="data:image/png;base64,') == 1  # the map travels inside the page


def test_a_streets_notices_are_one_pdf_with_a_page_per_unit(city, tmp_path):
    db, _, z = city
    street = "中山南路"
    on = z[z["street"].fillna("").str.split("、").apply(lambda names: street in names)]
    expected = {u for pair in zip(on["primary_unit"], on["co_unit"]) for u in pair
                if isinstance(u, str) and not u.startswith("FALLBACK-")}
    assert len(expected) >= 3
    out = tmp_path / "street.pdf"
    run_cli("notice", "--street", street, "--out", out, "--as-of", AS_OF, db=db, check=True)
    reader = PdfReader(out)
    assert len(reader.pages) == len(expected)
    seen = set()
    for page in reader.pages:
        assert _images(page) >= 1
        text = _flat(page.extract_text())
        found = re.findall(r"单位编号：(U-[0-9a-f]+)", text)
        assert len(found) == 1 and "责任单位（盖章）" in text
        seen.add(found[0])
    assert seen == expected


def test_unknown_unit_street_or_file_kind_say_what_to_do(city, tmp_path):
    db, unit_id, _ = city
    out = tmp_path / "x.pdf"
    done = run_cli("notice", "--unit", "U-nobody", "--out", out, db=db)
    assert done.returncode == 1 and "no unit 'U-nobody'" in done.stderr
    done = run_cli("notice", "--street", "不存在路", "--out", out, db=db)
    assert done.returncode == 1 and "不存在路" in done.stderr and "中山南路" in done.stderr
    done = run_cli("notice", "--unit", unit_id, "--out", tmp_path / "x.docx", db=db)
    assert done.returncode == 1 and ".pdf or .html" in done.stderr
    done = run_cli("notice", "--unit", unit_id, "--out", out, "--as-of", "2025-12-31", db=db)
    assert done.returncode == 1 and "no zones in force on 2025-12-31" in done.stderr
    assert not out.exists()


def test_without_a_chinese_font_nothing_is_printed_and_the_package_is_named(tmp_path, city):
    db, unit_id, _ = city
    conf = tmp_path / "fonts.conf"  # fontconfig that knows no font at all
    conf.write_text('<?xml version="1.0"?><!DOCTYPE fontconfig SYSTEM "fonts.dtd"><fontconfig>'
                    f"<cachedir>{tmp_path}/fc-cache</cachedir></fontconfig>")
    out = tmp_path / "boxes.pdf"
    done = run_cli("notice", "--unit", unit_id, "--out", out, db=db, env={"FONTCONFIG_FILE": str(conf)})
    assert done.returncode == 1 and "fonts-noto-cjk" in done.stderr and "boxes" in done.stderr
    assert not out.exists()


def test_a_city_words_its_own_notice(city, tmp_path):
    db, unit_id, _ = city
    own = tmp_path / "rules"
    own.mkdir()
    from layers.deadlines import RULES

    text = (RULES / "notice.toml").read_text("utf-8")
    own_title = text.replace('title = "门前三包责任告知书"', 'title = "市容环境卫生责任书"')
    (own / "notice.toml").write_text(own_title, "utf-8")
    out = tmp_path / "own.pdf"
    run_cli("notice", "--unit", unit_id, "--out", out, "--as-of", AS_OF, db=db, check=True,
            env={"ZONEMAP_RULES": str(own)})
    assert "市容环境卫生责任书" in _flat(PdfReader(out).pages[0].extract_text())
    (own / "notice.toml").write_text(text.replace('signatures = ["责任单位（盖章）", "街道办事处（盖章）"]',
                                                  "signatures = 3"), "utf-8")
    done = run_cli("notice", "--unit", unit_id, "--out", out, db=db, env={"ZONEMAP_RULES": str(own)})
    assert done.returncode == 1 and "notice.toml" in done.stderr and "signatures" in done.stderr
