"""Page labels: Chinese by default, English with ?lang=en."""

LABELS = {
    "zh": {"title": "zonemap 城市管理责任区地图", "switch": "English", "other": "en",
           "layers": {"buildings": "建筑物", "roads": "道路", "pois": "兴趣点", "areas": "地块",
                      "sites": "施工现场", "units": "责任单位", "zones": "责任区",
                      "grid": "单元网格", "problems": "问题"},
           "osm_tiles": "OpenStreetMap 底图（需联网）",
           "empty": "库中还没有数据：运行 scripts/zonemap demo 或 import-osm",
           "fields": {"name": "名称", "kind": "类型", "highway": "道路等级", "building": "建筑类型",
                      "code": "编号", "category": "类别", "bounds_text": "四至",
                      "area_m2": "面积(m²)", "street": "路段", "problem_id": "案卷号", "status": "状态",
                      "description": "描述", "unit_id": "责任单位", "zone_code": "责任区",
                      "routed_by": "确定方式", "stage_deadline": "本环节时限"},
           "truncated": "此范围要素过多，仅显示部分；请放大", "report": "上报问题", "cases": "案卷工作台"},
    "en": {"title": "zonemap city responsibility map", "switch": "中文", "other": "zh",
           "layers": {"buildings": "Buildings", "roads": "Roads", "pois": "Points of interest",
                      "areas": "Parcels", "sites": "Construction sites", "units": "Units",
                      "zones": "Zones", "grid": "Grid cells", "problems": "Problems"},
           "osm_tiles": "OpenStreetMap tiles (online)",
           "empty": "The store is empty: run scripts/zonemap demo or import-osm",
           "fields": {"name": "Name", "kind": "Kind", "highway": "Road class",
                      "building": "Building type", "code": "Code", "category": "Category",
                      "bounds_text": "Bounds (四至)", "area_m2": "Area (m²)", "street": "Street",
                      "problem_id": "Case", "status": "State", "description": "Description",
                      "unit_id": "Responsible unit", "zone_code": "Zone", "routed_by": "Routed by",
                      "stage_deadline": "Due"},
           "truncated": "Too many features here, some are not shown; zoom in", "report": "Report a problem",
           "cases": "Case desk"},
}


REPORT = {
    "zh": {"lang": "zh", "title": "上报城市管理问题", "map": "地图", "switch": "English", "other": "en",
           "category": "问题类别",
           "where": "位置（经度、纬度）", "lon": "经度", "lat": "纬度", "locate": "定位",
           "description": "描述", "address": "地址（可选）", "photo": "照片（可选）", "contact": "联系方式（不公开）",
           "token": "令牌（网格员/监督员，可选）", "token_hint": "公众可不填；网格员填入 zonemap token 发放的令牌",
           "send": "上报", "error": "出错", "no_gps": "此浏览器不能定位，请手动填写经纬度",
           "case_id": "案卷号", "unit": "责任单位", "zone": "责任区", "routed_by": "确定方式", "status": "状态",
           "duplicate": "与此案卷重复，已关联", "deadline": "本环节时限",
           "methods": {"zone": "位于责任区内", "nearest": "就近责任区（定位误差）", "building": "建筑所属单位",
                       "category": "按类别规则", "fallback": "属地兜底", "unlocated": "位置不明"}},
    "en": {"lang": "en", "title": "Report a city problem", "map": "Map", "switch": "中文", "other": "zh",
           "category": "Category",
           "where": "Location (longitude, latitude)", "lon": "Longitude", "lat": "Latitude", "locate": "Locate me",
           "description": "Description", "address": "Address (optional)", "photo": "Photo (optional)",
           "contact": "Contact (kept private)", "token": "Token (grid workers, optional)",
           "token_hint": "The public may leave it empty; grid workers paste the token from zonemap token",
           "send": "Report", "error": "Error", "no_gps": "This browser cannot locate you; type the coordinates",
           "case_id": "Case", "unit": "Responsible unit", "zone": "Zone", "routed_by": "Routed by",
           "status": "State", "duplicate": "Linked to this open case", "deadline": "Due",
           "methods": {"zone": "inside the zone", "nearest": "nearest zone (GPS error)",
                       "building": "the building's unit", "category": "category rule",
                       "fallback": "territorial fallback", "unlocated": "no location"}},
}


CASES = {
    "zh": {"lang": "zh", "title": "案卷工作台", "map": "地图", "report": "上报问题", "switch": "English", "other": "en",
           "token": "令牌 zm_…", "all_states": "全部状态", "category": "类别", "load": "查询", "total": "共 {n} 件",
           "case_id": "案卷号", "status": "状态", "unit": "责任单位", "deadline": "本环节时限", "zone": "责任区",
           "description": "描述", "duplicates": "重复上报", "note": "意见", "when": "时间", "who": "操作人",
           "action": "操作", "from_to": "状态变化",
           "actions": {"verify": "核实立案", "file": "立案", "void": "作废", "dispatch": "派遣", "accept": "签收",
                       "return": "回退", "extend": "申请延期", "approve_extension": "批准延期",
                       "refuse_extension": "驳回延期", "shelve": "挂账", "resume": "恢复", "feed_back": "处置反馈",
                       "check": "核查", "close": "结案", "rework": "返工", "report": "上报",
                       "await_verification": "待核实", "import": "导入"}},
    "en": {"lang": "en", "title": "Case desk", "map": "Map", "report": "Report a problem", "switch": "中文",
           "other": "zh",
           "token": "token zm_…", "all_states": "all states", "category": "Category", "load": "Show",
           "total": "{n} cases", "case_id": "Case", "status": "State", "unit": "Responsible unit", "deadline": "Due",
           "zone": "Zone", "description": "Description", "duplicates": "Duplicates", "note": "Note", "when": "When",
           "who": "Who", "action": "Action", "from_to": "State change", "actions": {}},
}


def cases_labels(lang: str | None) -> dict:
    return CASES.get((lang or "zh").lower(), CASES["zh"])


def report_labels(lang: str | None) -> dict:
    return REPORT.get((lang or "zh").lower(), REPORT["zh"])


def pick_lang(text: str | None) -> str:
    """The page language from ?lang=: zh (default) or en."""
    return text if text in ("zh", "en") else "zh"


def labels(lang: str | None) -> dict:
    return LABELS.get((lang or "zh").lower(), LABELS["zh"])
