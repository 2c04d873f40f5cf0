"""The layers zonemap keeps: their columns, types and geometry types, in one place.

`docs/layers.md` is generated from this module (`scripts/zonemap layers --schema --markdown`)
and a test fails when the two differ. Every layer is stored in EPSG:4326 (WGS 84 / CGCS2000
longitude–latitude); lengths and areas are computed in a metric CRS (see geo.crs).
Every layer also has `source` (where the row came from: file and row, "osm", or the zone generation
that made it) and `attrs` (a JSON object holding the source file's other fields under their
own names, Chinese ones included), so nothing a planner imports is lost.
"""

from __future__ import annotations

from dataclasses import dataclass, field

STORAGE_CRS = "EPSG:4326"

# Column types, with their GeoPackage and PostgreSQL spellings.
TYPES = {
    "text": ("TEXT", "text"),
    "integer": ("INTEGER", "bigint"),
    "real": ("REAL", "double precision"),
    "boolean": ("BOOLEAN", "boolean"),
    "date": ("DATE", "date"),
    "datetime": ("DATETIME", "timestamptz"),
}


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    doc: str
    required: bool = False
    unique: bool = False
    aliases: tuple[str, ...] = ()  # other names a source file may use (Chinese ones among them)
    private: bool = False  # never served on the map or in public API answers


@dataclass(frozen=True)
class Layer:
    name: str
    title_zh: str
    geometry_type: str | None  # "Point", "MultiLineString", "MultiPolygon"
    geometry_required: bool
    doc: str
    columns: tuple[Column, ...] = field(default_factory=tuple)
    private: bool = False  # a table the map never serves (users, tokens)

    @property
    def public_columns(self) -> list[str]:
        return [c.name for c in self.columns if not c.private]

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)


def _c(name, type_, doc, **kw):
    return Column(name, type_, doc, **kw)


_NAME = _c("name", "text", "name as the source gives it", aliases=("名称", "名字", "NAME", "Name"))
_NAME_EN = _c("name_en", "text", "English name, where known")
_OSM_ID = _c("osm_id", "text", "OpenStreetMap id, for OSM rows")
_ADDR = (_c("addr_street", "text", "street of the address", aliases=("街道名", "路名")),
         _c("addr_housenumber", "text", "house number", aliases=("门牌号",)))
_RAW = (_c("raw_x", "real", "x (longitude) exactly as received, before conversion"),
        _c("raw_y", "real", "y (latitude) exactly as received, before conversion"),
        _c("raw_crs", "text", "the system of raw_x/raw_y: EPSG code, or wgs84/gcj02/bd09/cgcs2000"))
_TAIL = (_c("source", "text", "origin of the row: file name and row number, osm, generated (a generated "
                  "zone), or generate:<run> (a unit that zone generation derived)"),
         _c("attrs", "text", "JSON object of the source's other fields, under their own names"))

LAYERS: dict[str, Layer] = {
    layer.name: layer
    for layer in [
        Layer("buildings", "建筑物", "MultiPolygon", True,
              "building footprints; their street-facing sides bound 门前三包 zones",
              (_OSM_ID, _NAME, _NAME_EN,
               _c("building", "text", "building type (OSM building=*: yes, residential, school…)",
                  aliases=("类型", "建筑类型")),
               _c("levels", "real", "number of storeys", aliases=("层数", "building_levels")),
               _c("height", "real", "height in metres", aliases=("高度",)),
               *_ADDR,
               _c("shop", "text", "OSM shop=* on the building"),
               _c("amenity", "text", "OSM amenity=* on the building"),
               _c("office", "text", "OSM office=* on the building"),
               *_TAIL)),
        Layer("roads", "道路", "MultiLineString", True,
              "road centrelines; carriageway edges (curbs) are modelled from them",
              (_OSM_ID, _NAME, _NAME_EN,
               _c("highway", "text", "road class (OSM highway=*: primary, residential, footway…)",
                  aliases=("道路等级", "等级")),
               _c("ref", "text", "road number"),
               _c("lanes", "real", "number of lanes", aliases=("车道数",)),
               _c("width", "real", "carriageway width in metres", aliases=("宽度", "路宽")),
               _c("curb_offset_m", "real", "planner's override: centreline to curb, metres"),
               _c("red_line_width", "real", "道路红线 width in metres (red line to red line)",
                  aliases=("红线宽度",)),
               _c("oneway", "text", "yes / no / -1"),
               _c("sidewalk", "text", "OSM sidewalk=* (both, left, right, no, separate)"),
               _c("bridge", "text", "OSM bridge=*"),
               _c("tunnel", "text", "OSM tunnel=*"),
               _c("layer", "text", "OSM layer=*"),
               _c("maxspeed", "text", "OSM maxspeed=*"),
               _c("service", "text", "OSM service=*"),
               *_TAIL)),
        Layer("pois", "兴趣点", "Point", True,
              "shops, amenities and offices: the candidates for 责任单位",
              (_OSM_ID, _NAME, _NAME_EN,
               _c("shop", "text", "OSM shop=*"),
               _c("amenity", "text", "OSM amenity=*"),
               _c("office", "text", "OSM office=*"),
               _c("craft", "text", "OSM craft=*"),
               _c("tourism", "text", "OSM tourism=*"),
               _c("leisure", "text", "OSM leisure=*"),
               _c("healthcare", "text", "OSM healthcare=*"),
               _c("brand", "text", "brand"),
               *_ADDR,
               _c("opening_hours", "text", "opening hours"),
               *_RAW, *_TAIL)),
        Layer("areas", "地块", "MultiPolygon", True,
              "parcels and land use (schools, markets, offices, parks…): 单位卫生责任区 candidates",
              (_OSM_ID, _c("osm_type", "text", "way or relation"), _NAME, _NAME_EN,
               _c("landuse", "text", "OSM landuse=*", aliases=("用地性质",)),
               _c("amenity", "text", "OSM amenity=*"),
               _c("leisure", "text", "OSM leisure=*"),
               _c("tourism", "text", "OSM tourism=*"),
               _c("shop", "text", "OSM shop=*"),
               _c("office", "text", "OSM office=*"),
               _c("construction", "text", "OSM construction=*"),
               _c("operator", "text", "operator: the unit that answers for the parcel",
                  aliases=("管理单位", "权属单位")),
               *_TAIL)),
        Layer("sites", "施工现场", "MultiPolygon", True,
              "construction sites inside their hoarding (围挡); the contractor answers for them",
              (_c("code", "text", "site code or permit number", aliases=("编号", "许可证号")),
               _NAME,
               _c("contractor", "text", "施工单位, the primary responsible unit",
                  aliases=("施工单位",)),
               _c("developer", "text", "建设单位, co-responsible", aliases=("建设单位",)),
               _c("start_date", "date", "works start", aliases=("开工日期",)),
               _c("end_date", "date", "works end", aliases=("竣工日期",)),
               *_TAIL)),
        Layer("units", "责任单位", "Point", False,
              "responsible units (责任单位) and their persons; location optional",
              (_c("unit_id", "text", "stable zonemap id of the unit", required=True, unique=True,
                  aliases=("单位编号",)),
               _c("name", "text", "unit name", required=True, aliases=("单位名称", "名称", "NAME")),
               _c("type", "text", "shop, company, school, site contractor, property manager…",
                  aliases=("单位类型",)),
               _c("credit_code", "text", "统一社会信用代码 (18 characters), unique", unique=True,
                  aliases=("统一社会信用代码", "信用代码")),
               _c("address", "text", "address", aliases=("地址",)),
               _c("person", "text", "责任人, the named person", aliases=("责任人", "负责人")),
               _c("phone", "text", "the person's phone", aliases=("电话", "联系电话")),
               _c("placeholder", "boolean", "true when named from an address or id, not a real name"),
               *_RAW, *_TAIL,
               _c("retired_at", "datetime", "when the unit was retired (empty: active); a retired "
                  "unit is kept, never deleted, and takes no new zones"),
               _c("merged_into", "text", "unit_id of the unit this one was merged into"),
               _c("email", "text", "the person's e-mail address, for notices (layers/notify.py)",
                  aliases=("邮箱", "电子邮箱", "e-mail")),
               _c("gateway_id", "text", "the person's id on the SMS/WeChat gateway (a mobile number or "
                  "WeChat id), for notices", aliases=("网关编号", "微信号", "短信号码")),
               _c("notify_off", "text", "channels the person turned off, comma-separated: email, gateway",
                  aliases=("停止通知",)))),
        Layer("zones", "责任区", "MultiPolygon", True,
              "responsibility zones: 门前三包 frontage, 单位卫生责任区, 施工现场, public (属地兜底)",
              (_c("code", "text", "stable zone code", required=True, aliases=("编号", "责任区编号")),
               _c("kind", "text", "frontage / unit / site / public", required=True,
                  aliases=("类型",)),
               _c("primary_unit", "text", "unit_id of the primary responsible unit (主责)",
                  aliases=("责任单位",)),
               _c("co_unit", "text", "unit_id of a co-responsible unit (协同)"),
               _c("duties", "text", "duties, e.g. 卫生,容貌,秩序", aliases=("责任内容",)),
               _c("profile", "text", "rule profile the zone was drawn under"),
               _c("area_m2", "real", "area in square metres (metric CRS)"),
               _c("frontage_len_m", "real", "street-facing length in metres"),
               _c("depth_m", "real", "depth from building line to curb in metres"),
               _c("bounds_text", "text", "四至: 东至… 西至… 南至… 北至…", aliases=("四至",)),
               _c("street", "text", "street name(s)", aliases=("所属街道", "路段")),
               _c("valid_from", "date", "first day this version is in force"),
               _c("valid_to", "date", "first day it is no longer in force (empty: current)"),
               _c("version", "integer", "version number of this zone code"),
               *_TAIL,
               _c("changed_by", "text", "who made this version (user name; empty for zones generate "
                  "and imports before issue 10)"),
               _c("changed_at", "datetime", "when this version was made"),
               _c("change_note", "text", "why: the planner's note"),
               _c("change_kind", "text", "assign, geometry, create, split, merge, restore, trim "
                  "(a neighbour cut by another zone's edit), unit_merge, import or generate"),
               _c("run", "text", "the `zones generate` run that wrote this row: while the run is "
                  "listed in zonemap_runs (moving in), no reader sees the row", private=True))),
        Layer("grid", "单元网格", "MultiPolygon", True,
              "unit grid cells (万米网格) with their 15-digit codes",
              (_c("code", "text", "15 digits: 6 county + 3 street + 3 community + 3 sequence",
                  required=True, unique=True, aliases=("网格编码", "编码")),
               _c("street", "text", "street office (街道)", aliases=("街道",)),
               _c("community", "text", "community (社区)", aliases=("社区",)),
               _NAME,
               *_TAIL)),
        Layer("problems", "问题", "Point", True,
              "reported problems and the cases they become (案卷): where, what, who answers, "
              "the state and its deadline; every change of state is kept in case_steps",
              (_c("problem_id", "text", "id given by the source or by zonemap", unique=True,
                  aliases=("编号", "case_id", "案卷号")),
               _c("category", "text", "5-digit national category code, or the source's type",
                  aliases=("类别", "问题类型", "case_type")),
               _c("description", "text", "what was seen", aliases=("描述", "问题描述")),
               _c("address", "text", "address as reported", aliases=("地址", "location")),
               _c("reported_at", "datetime", "when it was reported", aliases=("上报时间", "open_dt")),
               _c("status", "text", "case state: reported, verifying, filed, dispatched, processing, "
                  "fed_back, checking, closed, returned, extended, shelved, rework, voided; "
                  "linked for a duplicate report"),
               _c("source_status", "text", "status as the source file gave it",
                  aliases=("状态", "case_status", "原状态")),
               _c("channel", "text", "how it came in: api, open311, file"),
               _c("public_report", "boolean", "reported by the public (verified before filing)"),
               _c("reporter", "text", "who reported it (user name or source)", aliases=("上报人",)),
               _c("contact", "text", "reporter's phone or e-mail", private=True,
                  aliases=("联系方式", "phone", "email")),
               _c("photo", "text", "file name of the uploaded photo", private=True),
               _c("department", "text", "department that handles the category (专业部门)",
                  aliases=("部门", "处置部门")),
               _c("zone_code", "text", "code of the zone the point was routed to"),
               _c("zone_version", "integer", "version of that zone in force at the report's time"),
               _c("grid_code", "text", "unit grid cell (万米单元网格) the point is in", aliases=("网格编码",)),
               _c("unit_id", "text", "unit_id of the party that answers (责任主体)"),
               _c("routed_by", "text", "zone, nearest, building, category, fallback or unlocated"),
               _c("route_distance_m", "real", "distance from the point to the zone, metres"),
               _c("location_placeholder", "boolean",
                  "the source could not place the report: its point is a stand-in, not used",
                  aliases=("location_is_placeholder", "位置无效")),
               _c("duplicate_of", "text", "problem_id of the open case this report was linked to"),
               _c("stage_started_at", "datetime", "when the current state began"),
               _c("stage_deadline", "datetime", "when the current state is due (empty: no limit)"),
               _c("light_yellow_at", "datetime", "when the current state's light turns yellow (80 % of its "
                  "time used on its calendar); empty: no limit"),
               _c("light_red_after", "datetime", "after this instant the light is red (more than all of "
                  "its time used: the deadline, or the next working period after it)"),
               _c("target_at", "datetime", "disposal deadline (处置时限)", aliases=("target_dt",)),
               _c("closed_at", "datetime", "when the case was closed", aliases=("closed_dt", "结案时间")),
               _c("rework_count", "integer", "times a check failed (返工)"),
               _c("extension_count", "integer", "extensions approved (延期)"),
               _c("idempotency_key", "text", "the reporting user's name, a space and the "
                  "Idempotency-Key the report came with: a retry returns this case", unique=True,
                  private=True),
               *_RAW, *_TAIL)),
        Layer("case_steps", "案卷流转", None, False,
              "every change of a case's state: who, when, from, to and why; never rewritten",
              (_c("problem_id", "text", "the case", required=True),
               _c("seq", "integer", "1, 2, 3… within the case", required=True),
               _c("at", "datetime", "when", required=True),
               _c("actor", "text", "user name, or system"),
               _c("role", "text", "the actor's role"),
               _c("action", "text", "what was done (report, verify, file, dispatch…)"),
               _c("from_status", "text", "state before"),
               _c("to_status", "text", "state after"),
               _c("unit_id", "text", "unit answering after the step"),
               _c("deadline_at", "datetime", "deadline of the new state"),
               _c("light", "text", "green/yellow/red of the state left, at the time of the step"),
               _c("note", "text", "opinion or reason given"),
               _c("photos", "text", "photos sent with the step: a JSON list of {name, kind} (kind: before, "
                  "after or photo; the file under the photos folder)"),
               *_TAIL)),
        Layer("audit", "审计日志", None, False,
              "every write: who, when, what and from where, appended in the same transaction "
              "as the write it describes; never rewritten, never holds a token or a password", (
                  _c("at", "datetime", "when (UTC)", required=True),
                  _c("actor", "text", "user name (import, anonymous, … for the command line and the public)"),
                  _c("role", "text", "the actor's role"),
                  _c("action", "text", "report, transition:ACTION, import:LAYER, users:add, token:issue, "
                     "token:revoke", required=True),
                  _c("target", "text", "what it acted on: a case id, a user name, a file"),
                  _c("detail", "text", "a short JSON object (counts, states, the unit)"),
                  _c("origin", "text", "the client address, or cli"),
                  *_TAIL), private=True),
        Layer("users", "用户", None, False,
              "people who sign in, with one role each", (
                  _c("name", "text", "login name", required=True, unique=True),
                  _c("role", "text", "public, inspector, dispatcher, unit, planner or admin",
                     required=True),
                  _c("unit_id", "text", "for role unit: the unit whose cases the user answers"),
                  _c("password_hash", "text", "salted hash (werkzeug scrypt)", private=True),
                  _c("created_at", "datetime", "when the user was added"),
                  _c("active", "boolean", "false once disabled"),
                  *_TAIL), private=True),
        Layer("tokens", "令牌", None, False,
              "API tokens (Authorization: Bearer …); only their SHA-256 is kept", (
                  _c("token_hash", "text", "SHA-256 of the token", required=True, unique=True,
                     private=True),
                  _c("user_name", "text", "the user it signs in as", required=True),
                  _c("created_at", "datetime", "when it was issued"),
                  _c("revoked", "boolean", "true once revoked"),
                  *_TAIL), private=True),
        Layer("patrols", "巡查轨迹", "MultiLineString", True,
              "grid workers' patrol tracks (走): who walked where and when; 巡查率 counts the grid "
              "cells or zones passed within a distance of them", (
                  _c("worker", "text", "the grid worker (网格员/巡查员) who walked it", required=True,
                     aliases=("巡查员", "网格员", "巡查人", "user")),
                  _c("started_at", "datetime", "first point's time", aliases=("开始时间", "start")),
                  _c("ended_at", "datetime", "last point's time", aliases=("结束时间", "end")),
                  _c("length_m", "real", "track length in metres (metric CRS)"),
                  _c("points", "integer", "number of track points"),
                  _c("channel", "text", "how it came in: file or api"),
                  *_TAIL)),
        Layer("inspections", "检查记录", None, False,
              "inspections (评) of a zone or a unit: the score sheet of layers/rules/inspection.toml, "
              "its total and pass/fail", (
                  _c("inspection_id", "text", "id given by the source or by zonemap", required=True,
                     unique=True, aliases=("检查编号", "编号")),
                  _c("zone_code", "text", "the zone inspected", aliases=("责任区编号",)),
                  _c("unit_id", "text", "the unit inspected (the zone's primary unit when a zone is given)",
                     aliases=("单位编号",)),
                  _c("inspected_at", "datetime", "when", required=True, aliases=("检查时间", "检查日期")),
                  _c("inspector", "text", "who inspected", aliases=("检查人",)),
                  _c("scores", "text", "JSON object: score sheet item id → score 0–100",
                     aliases=("评分",)),
                  _c("total", "real", "weighted total 0–100", aliases=("总分", "得分")),
                  _c("passed", "boolean", "total at or above the sheet's pass mark", aliases=("合格",)),
                  _c("sheet_version", "text", "version of the score sheet used"),
                  _c("photos", "text", "JSON list of photo file names", aliases=("照片",)),
                  _c("remarks", "text", "remarks", aliases=("备注",)),
                  *_TAIL)),
        Layer("sanctions", "奖惩台账", None, False,
              "rewards and fines per unit and period, computed from the rules of "
              "layers/rules/inspection.toml and kept with the rules' version", (
                  _c("unit_id", "text", "the unit", required=True),
                  _c("period", "text", "YYYY-MM (or YYYY-Qn, YYYY)", required=True),
                  _c("kind", "text", "reward or fine", required=True),
                  _c("amount", "real", "yuan", required=True),
                  _c("rule", "text", "id of the rule that gave it"),
                  _c("reason", "text", "why, in words"),
                  _c("rules_version", "text", "version of inspection.toml the rule came from"),
                  _c("computed_at", "datetime", "when it was computed"),
                  *_TAIL)),
        Layer("outbox", "通知发件箱", None, False,
              "notices to the responsible party (dispatch, yellow, red, return, rework, close, digest), "
              "written in the same transaction as the case step that causes them and delivered by "
              "`zonemap notify run`; a notice is claimed (sending, with a lease in next_at) before it "
              "is sent, so a crashed sender's notice is retried once its lease ends", (
                  _c("notice_id", "text", "N + a random hex id", required=True, unique=True),
                  _c("event", "text", "dispatched, yellow, red, returned, reworked, closed, digest…",
                     required=True),
                  _c("problem_id", "text", "the case (empty for a digest)"),
                  _c("unit_id", "text", "the unit the notice concerns"),
                  _c("recipient", "text", "unit, reporter or a staff desk of notify.toml"),
                  _c("channel", "text", "email or gateway", required=True),
                  _c("address", "text", "e-mail address or gateway id", required=True, private=True),
                  _c("subject", "text", "subject line"),
                  _c("body", "text", "the text sent", private=True),
                  _c("status", "text", "queued, sending, delivered, failed (retried), given_up",
                     required=True),
                  _c("attempts", "integer", "delivery attempts so far"),
                  _c("next_at", "datetime", "when it is next due; while sending, when its lease ends"),
                  _c("last_error", "text", "the last failure, as the server said it"),
                  _c("created_at", "datetime", "when it was written", required=True),
                  _c("delivered_at", "datetime", "when the server took it"),
                  _c("dedupe_key", "text", "what makes it once: case, step or stage, event, "
                     "recipient, channel", required=True, unique=True),
                  *_TAIL), private=True),
    ]
}


def get_layer(name: str) -> Layer:
    """The layer called `name`, or an error that lists the layers there are."""
    try:
        return LAYERS[name]
    except KeyError:
        raise KeyError(f"unknown layer {name!r}; the layers are: {', '.join(LAYERS)}") from None


def schema_markdown() -> str:
    """The layer reference as Markdown (what docs/layers.md holds)."""
    out = ["# Layers", "",
           "Generated from `layers/schema.py` by `scripts/zonemap layers --schema --markdown`;",
           "a test fails when this file and the code differ.",
           f"Every layer is stored in {STORAGE_CRS}; each has an `fid` key added by the store.", ""]
    for layer in LAYERS.values():
        geom = layer.geometry_type or "none"
        if layer.geometry_type and not layer.geometry_required:
            geom += " (optional)"
        out += [f"## `{layer.name}` {layer.title_zh}", "", f"{layer.doc}. Geometry: {geom}.", "",
                "| column | type | required | unique | meaning | also read from |",
                "| --- | --- | --- | --- | --- | --- |"]
        for c in layer.columns:
            out.append(f"| `{c.name}` | {c.type} | {'yes' if c.required else ''} | "
                       f"{'yes' if c.unique else ''} | {c.doc} | {', '.join(c.aliases)} |")
        out.append("")
    return "\n".join(out)
