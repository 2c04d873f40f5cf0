import json

from layers.schema import LAYERS, schema_markdown
from tests.conftest import ROOT, run_cli


def test_docs_layers_md_is_the_schema():
    doc = (ROOT / "docs" / "layers.md").read_text("utf-8")
    assert doc.strip() == schema_markdown().strip(), (
        "docs/layers.md is stale: run scripts/zonemap layers --schema --markdown > docs/layers.md")


def test_every_issue_layer_is_there_with_its_key_columns():
    want = {"buildings": [], "roads": ["highway", "lanes", "width", "oneway", "sidewalk"],
            "pois": ["shop", "amenity", "office", "raw_x", "raw_y", "raw_crs"], "areas": [],
            "sites": ["contractor"],
            "units": ["name", "type", "credit_code", "address", "person", "phone", "source"],
            "zones": ["code", "kind", "primary_unit", "co_unit", "duties", "profile", "area_m2",
                      "frontage_len_m", "depth_m", "bounds_text", "street", "valid_from",
                      "valid_to", "version"],
            "grid": ["code", "street", "community"],
            "problems": ["category", "raw_x", "raw_y", "raw_crs"]}
    for name, cols in want.items():
        assert name in LAYERS
        assert set(cols) <= set(LAYERS[name].column_names), name


def test_cli_describes_the_schema_as_json():
    out = run_cli("layers", "--schema", "--json", check=True)
    data = {d["name"]: d for d in json.loads(out.stdout)}
    assert set(data) == set(LAYERS)
    assert data["zones"]["geometry_type"] == "MultiPolygon"
    assert any(c["name"] == "credit_code" and c["unique"] for c in data["units"]["columns"])
