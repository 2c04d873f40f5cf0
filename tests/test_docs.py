"""Documentation that cannot drift: README.md names every setting (its environment variable)
and every HTTP endpoint the app serves."""

import dataclasses
import re

from layers.settings import Settings
from tests.conftest import ROOT
from webmap.app import create_app

README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_every_setting_is_documented():
    missing = [f.metadata["env"] for f in dataclasses.fields(Settings) if f.metadata["env"] not in README]
    assert not missing, f"README.md does not document {missing}"


def test_every_endpoint_is_documented(tmp_path):
    app = create_app({"db": str(tmp_path / "d.gpkg")})
    documented = README.replace("{", "<").replace("}", ">")
    missing = []
    for rule in app.url_map.iter_rules():
        # /open311/v2/requests/<request_id>.<fmt> is documented as …/requests/{id}.json or .xml
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", "<>", rule.rule)
        pattern = re.escape(path).replace("<>", r"<?[\w.-]*>?")
        if path.startswith("/open311/v2/"):
            pattern = re.escape(path.removeprefix("/open311/v2/")).replace("<>", r"<?[\w.|-]*>?")
        if not re.search(pattern, documented):
            missing.append(rule.rule)
    assert not missing, f"README.md does not document {missing}"
