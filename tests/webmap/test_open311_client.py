"""Open311 GeoReport v2 in XML and in JSON, asked by a maintained client library (georeport,
PyPI) of the real server that `scripts/zonemap serve` starts (gunicorn), on a small store.

georeport reads services, a service definition, request lists and one request, in either
format (xmltodict for XML), but cannot POST: reports go in as the spec's form-encoded POST
with `requests` (georeport's own HTTP library), and every answer the library does not read
(the POST's, errors, an empty list) is parsed strictly (xml.etree, json) and held to the
spec's element names. Both formats must say the same thing, Chinese text included."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
import requests
from georeport import GeoReport

from layers.store import open_store
from layers.users import add_user, issue_token
from scripts.bench import load
from tests.layers.test_cases import IN_F1, city

FORMATS = ("json", "xml")
IN_SITE = (118.7808, 32.0402)  # inside the construction site S1 (unit U-SITE, 乙建设工程公司)
JURISDICTION = "nanjing.gov.cn"  # sent as the library sends it; a one-city server may ignore it
CONTENT_TYPES = {"json": "application/json; charset=utf-8", "xml": "text/xml; charset=utf-8"}

# the spec's element names (https://wiki.open311.org/GeoReport_v2), per answer
SERVICE = {"service_code", "service_name", "description", "metadata", "type", "keywords", "group"}
REQUEST = {"service_request_id", "status", "status_notes", "service_name", "service_code", "description",
           "agency_responsible", "service_notice", "requested_datetime", "updated_datetime",
           "expected_datetime", "address", "address_id", "zipcode", "lat", "long", "media_url"}
CREATED = {"service_request_id", "service_notice", "account_id"}
ERROR = {"code", "description"}
TIMEOUT = 60


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The real server on a store with two zones and two units, and the tokens of an
    inspector, a dispatcher and the site's unit; stopped at the end of the module."""
    tmp = tmp_path_factory.mktemp("open311")
    db = str(tmp / "o.gpkg")
    city(db).close()
    tokens = {}
    with open_store(db) as s:
        for name, role, unit in [("insp", "inspector", None), ("disp", "dispatcher", None),
                                 ("site", "unit", "U-SITE")]:
            add_user(s, name, role, "correct horse 42", unit)
            tokens[name] = issue_token(s, name)
    server = load.Server(db, tmp / "server.log", workers=1, threads=2)
    server.start()
    try:
        yield f"http://{load.HOST}:{server.port}", tokens
    finally:
        server.stop()


def client(served, fmt: str) -> GeoReport:
    base, tokens = served
    return GeoReport(f"{base}/open311/v2", jurisdiction=JURISDICTION, api_key=tokens["insp"], output_format=fmt)


def listed(answer) -> list[dict]:
    """xmltodict makes a one-element list a dict; the library hands that on."""
    return [answer] if isinstance(answer, dict) else answer


def strict(response: requests.Response, fmt: str, outer: str, inner: str, fields: set[str]) -> list[dict]:
    """A list answer parsed strictly: the spec's content type and UTF-8 declaration, the list
    and item element names, exactly `fields` in each item, no attributes or namespaces."""
    assert response.headers["Content-Type"] == CONTENT_TYPES[fmt]
    if fmt == "json":
        items = json.loads(response.content.decode("utf-8"))
        assert isinstance(items, list) and all(set(i) == fields for i in items), items
        return items
    assert response.content.startswith(b'<?xml version="1.0" encoding="utf-8"?>')
    root = ET.fromstring(response.content)
    assert root.tag == outer and not root.attrib
    items = []
    for el in root:
        assert el.tag == inner and not el.attrib and len(el) == len(fields)
        item = {child.tag: child.text for child in el}
        assert set(item) == fields and all(len(child) == 0 for child in el), item
        items.append(item)
    return items


def post(served, fmt: str, **fields) -> requests.Response:
    """The spec's POST: form fields, UTF-8, the api_key among them."""
    base, tokens = served
    fields.setdefault("api_key", tokens["insp"])
    return requests.post(f"{base}/open311/v2/requests.{fmt}", data={"jurisdiction_id": JURISDICTION, **fields},
                         timeout=TIMEOUT)


def report(served, fmt: str, code: str, where, **fields) -> str:
    r = post(served, fmt, service_code=code, lat=str(where[1]), long=str(where[0]), **fields)
    assert r.status_code == 200, r.text
    (created,) = strict(r, fmt, "service_requests", "request", CREATED)
    assert created["account_id"] is None  # <account_id/> in XML, null in JSON
    return created["service_request_id"]


def same(json_item: dict, xml_item: dict) -> None:
    """An XML item says what its JSON twin says: the same names, true/false for booleans,
    numbers as their text, and an empty element for null."""
    assert set(xml_item) == set(json_item)
    for k, j in json_item.items():
        x = xml_item[k]
        if j is None or isinstance(j, str):
            assert x == j, (k, x, j)
        elif isinstance(j, bool):
            assert x == ("true" if j else "false"), (k, x)
        else:
            assert float(x) == pytest.approx(j), (k, x, j)


@pytest.fixture(scope="module")
def two_cases(served):
    """One open case of 06010 at the shop, and one of 09006 at the site driven to closed."""
    base, tokens = served
    open_id = report(served, "json", "06010", IN_F1, description="门口垃圾成堆")
    closed_id = report(served, "xml", "09006", IN_SITE, description="工地扬尘")
    # an inspector's report starts as reported (已上报): filed, dispatched, handled, checked, closed
    for action, who in [("file", "insp"), ("dispatch", "disp"), ("accept", "site"), ("feed_back", "site"),
                        ("check", "insp"), ("close", "insp")]:
        r = requests.post(f"{base}/api/cases/{closed_id}/transition", json={"action": action},
                          headers={"Authorization": f"Bearer {tokens[who]}"}, timeout=TIMEOUT)
        assert r.status_code == 200, r.text
    return open_id, closed_id


def test_services_read_the_same_in_both_formats(served):
    as_json = client(served, "json").get_service_list()
    as_xml = listed(client(served, "xml").get_service_list())
    assert len(as_json) >= 90 and len(as_xml) == len(as_json)
    for j, x in zip(as_json, as_xml):
        assert set(j) == SERVICE and j["metadata"] is False and j["type"] == "realtime"
        same(j, x)
    names = {s["service_code"]: s["service_name"] for s in as_xml}
    assert names["06010"] == "暴露垃圾"


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_service_definition(served, fmt):
    definition = client(served, fmt).get_service_definition("06010")
    assert definition["service_code"] == "06010"
    assert definition["attributes"] in ([], None)  # no attributes: [] in JSON, <attributes/> in XML
    base, _ = served
    r = requests.get(f"{base}/open311/v2/services/06010.{fmt}", timeout=TIMEOUT)
    assert r.headers["Content-Type"] == CONTENT_TYPES[fmt]
    if fmt == "xml":
        root = ET.fromstring(r.content)
        assert root.tag == "service_definition" and [c.tag for c in root] == ["service_code", "attributes"]
        assert len(root.find("attributes")) == 0


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_report_posted_then_read_back_with_its_chinese_text(served, fmt):
    code, where, unit = {"json": ("06010", IN_F1, "<b>甲</b>商店"), "xml": ("06002", IN_SITE, "乙建设工程公司")}[fmt]
    text = "井盖缺失，夜间危险！\n请尽快处理 <当心> & 谢谢"
    rid = report(served, fmt, code, where, description=text, address_string="中山路1号 (新街口)",
                 email="reporter@example.org", first_name="小明")
    got = client(served, fmt).get_service_request(rid)
    assert set(got) == REQUEST
    assert (got["service_request_id"], got["status"], got["service_code"]) == (rid, "open", code)
    assert (got["description"], got["address"], got["agency_responsible"]) == (text, "中山路1号 (新街口)", unit)
    assert float(got["lat"]) == pytest.approx(where[1]) and float(got["long"]) == pytest.approx(where[0])
    raw = requests.get(f"{served[0]}/open311/v2/requests/{rid}.{fmt}", timeout=TIMEOUT)
    (item,) = strict(raw, fmt, "service_requests", "request", REQUEST)
    assert item["description"] == text
    assert "reporter@example.org" not in raw.text and "小明" not in raw.text  # nothing personal served
    # the other format says the same about the same request
    other = "xml" if fmt == "json" else "json"
    twin = client(served, other).get_service_request(rid)
    same(*((got, twin) if fmt == "json" else (twin, got)))


@pytest.mark.parametrize("fmt", FORMATS)
def test_lists_filter_by_id_status_and_service_code(served, two_cases, fmt):
    open_id, closed_id = two_cases
    c = client(served, fmt)
    closed = listed(c.get_service_requests(status="closed"))
    assert [(r["service_request_id"], r["status"]) for r in closed] == [(closed_id, "closed")]
    opened = listed(c.get_service_requests(status="open"))
    assert open_id in {r["service_request_id"] for r in opened} and {r["status"] for r in opened} == {"open"}
    both = listed(c.get_service_requests(service_request_id=f"{open_id},{closed_id}"))
    assert {r["service_request_id"] for r in both} == {open_id, closed_id}
    sites = listed(c.get_service_requests(service_code="09006"))
    assert [r["service_request_id"] for r in sites] == [closed_id]
    assert sites[0]["description"] == "工地扬尘" and sites[0]["agency_responsible"] == "乙建设工程公司"
    every = listed(c.get_service_requests(status="open,closed"))
    assert {open_id, closed_id} <= {r["service_request_id"] for r in every}
    for r in every:
        assert set(r) == REQUEST
    # a bare W3C date is the city's day: from its start, and through its end
    day = next(r for r in every if r["service_request_id"] == open_id)["requested_datetime"][:10]
    that_day = listed(c.get_service_requests(start_date=day, end_date=day))
    assert open_id in {r["service_request_id"] for r in that_day}
    # an empty list is the bare list element (georeport cannot read that in XML: read it strictly)
    empty = requests.get(f"{served[0]}/open311/v2/requests.{fmt}",
                         params={"end_date": "2020-01-01T00:00:00Z"}, timeout=TIMEOUT)
    assert empty.status_code == 200 and strict(empty, fmt, "service_requests", "request", REQUEST) == []


def error_of(response: requests.Response, fmt: str) -> str:
    """The one error of a spec error list, whose code is the HTTP status; its description."""
    (err,) = strict(response, fmt, "errors", "error", ERROR)
    assert int(err["code"]) == response.status_code
    return err["description"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_errors_are_the_specs_error_list(served, fmt):
    c = client(served, fmt)
    with pytest.raises(requests.HTTPError) as unknown:
        c.get_service_definition("00000")
    assert unknown.value.response.status_code == 404
    assert "00000" in error_of(unknown.value.response, fmt)
    with pytest.raises(requests.HTTPError) as missing:
        c.get_service_request("ZM20000101-999999")
    assert missing.value.response.status_code == 404 and "ZM20000101-999999" in error_of(missing.value.response, fmt)

    no_place = post(served, fmt, service_code="06010", description="没有位置")
    assert no_place.status_code == 400 and "lat and long" in error_of(no_place, fmt)
    not_offered = post(served, fmt, service_code="00000", lat=str(IN_F1[1]), long=str(IN_F1[0]))
    assert not_offered.status_code == 404 and "service_code '00000'" in error_of(not_offered, fmt)
    bad_key = post(served, fmt, service_code="06010", lat=str(IN_F1[1]), long=str(IN_F1[0]), api_key="zm_wrong")
    assert bad_key.status_code in (401, 403) and "token" in error_of(bad_key, fmt)
    bad_date = requests.get(f"{served[0]}/open311/v2/requests.{fmt}", params={"start_date": "上周"}, timeout=TIMEOUT)
    assert bad_date.status_code == 400 and "上周" in error_of(bad_date, fmt)


def test_a_control_character_in_a_description_keeps_the_xml_readable(served):
    """XML 1.0 cannot hold most control characters even escaped; one pasted into a report
    must not make requests.xml unreadable for every client."""
    rid = report(served, "json", "06003", IN_F1, description="铃声\x07与转义\x1b")
    as_json = client(served, "json").get_service_request(rid)
    assert as_json["description"] == "铃声\x07与转义\x1b"  # JSON keeps the text whole
    listed_xml = listed(client(served, "xml").get_service_requests())  # the whole list still parses
    (item,) = [r for r in listed_xml if r["service_request_id"] == rid]
    assert item["description"] == "铃声\ufffd与转义\ufffd"
