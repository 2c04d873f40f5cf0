"""Page labels: Chinese by default, English with ?lang=en."""

from layers.workflow import ROLE_ZH, STATE_ZH

LABELS = {
    "zh": {"title": "zonemap 城市管理责任区地图", "switch": "English", "other": "en",
           "layers": {"buildings": "建筑物", "roads": "道路", "pois": "兴趣点", "areas": "地块",
                      "sites": "施工现场", "units": "责任单位", "zones": "责任区",
                      "grid": "单元网格", "problems": "问题"},
           "osm_tiles": "OpenStreetMap 底图（需联网）",
           "empty": "库中还没有数据：运行 scripts/zonemap demo 或 import-osm",
           "fields": {"name": "名称", "kind": "类型", "highway": "道路等级", "building": "建筑类型",
                      "code": "编号", "bounds_text": "四至",
                      "area_m2": "面积(m²)", "street": "路段", "problem_id": "案卷号", "status": "状态",
                      "description": "描述", "unit_name": "责任单位", "category_name": "问题类别",
                      "zone_code": "责任区", "routed_by": "确定方式", "reported_at": "上报时间",
                      "stage_deadline": "本环节时限"},
           "truncated": "此范围要素过多，仅显示部分；请放大", "report": "上报问题", "cases": "案卷工作台",
           "legend": "责任区类型"},
    "en": {"title": "zonemap city responsibility map", "switch": "中文", "other": "zh",
           "layers": {"buildings": "Buildings", "roads": "Roads", "pois": "Points of interest",
                      "areas": "Parcels", "sites": "Construction sites", "units": "Units",
                      "zones": "Zones", "grid": "Grid cells", "problems": "Problems"},
           "osm_tiles": "OpenStreetMap tiles (online)",
           "empty": "The store is empty: run scripts/zonemap demo or import-osm",
           "fields": {"name": "Name", "kind": "Kind", "highway": "Road class",
                      "building": "Building type", "code": "Code",
                      "bounds_text": "Bounds (四至)", "area_m2": "Area (m²)", "street": "Street",
                      "problem_id": "Case", "status": "State", "description": "Description",
                      "unit_name": "Responsible unit", "category_name": "Problem", "zone_code": "Zone",
                      "routed_by": "Routed by", "reported_at": "Reported", "stage_deadline": "Due"},
           "truncated": "Too many features here, some are not shown; zoom in", "report": "Report a problem",
           "cases": "Case desk", "legend": "Zone kinds"},
}


REPORT = {
    "zh": {"lang": "zh", "title": "上报城市管理问题", "map": "地图", "switch": "English", "other": "en",
           "category": "问题类别",
           "where": "位置（经度、纬度）", "lon": "经度", "lat": "纬度", "locate": "定位",
           "description": "描述", "address": "地址（可选）", "photo": "照片（可选）", "contact": "联系方式（不公开）",
           "as_public": "匿名上报（联系方式不公开）；网格员、监督员请先登录", "as_user": "以 {name} 的身份上报",
           "send": "上报", "error": "出错", "no_gps": "此浏览器不能定位，请手动填写经纬度",
           "case_id": "案卷号", "unit": "责任单位", "zone": "责任区", "routed_by": "确定方式", "status": "状态",
           "duplicate": "与此案卷重复，已关联", "deadline": "本环节时限",
           "sent": "已上报", "linked": "已有相同问题在办，本次上报已关联到该案卷", "date": "{M}月{D}日 {hh}:{mm}",
           "date_year": "{Y}年{M}月{D}日 {hh}:{mm}", "details": "技术详情",
           "fields": {"lon": "经度", "lat": "纬度", "lon/lat": "经纬度", "crs": "坐标系", "category": "问题类别",
                      "description": "描述",
                      "address": "地址", "contact": "联系方式", "photo": "照片"},
           "errors": {"field": "“{field}”填写有误，请检查后重新上报", "400": "填写有误，请检查后重新上报",
                      "401": "登录已失效，请重新登录后再上报", "403": "当前账号不能上报，请换账号或退出后匿名上报",
                      "413": "照片太大，请换一张较小的照片", "422": "该位置不在本市服务范围内，请检查定位或坐标系",
                      "429": "上报太频繁，请稍后再试", "500": "服务器出错，本次上报没有保存，请稍后重试",
                      "503": "服务暂时不可用，本次上报没有保存，请稍后重试",
                      "network": "网络不通，本次上报没有发出，请稍后重试"},
           "methods": {"zone": "位于责任区内", "nearest": "就近责任区（定位误差）", "building": "建筑所属单位",
                       "category": "按类别规则", "fallback": "属地兜底", "unlocated": "位置不明"}},
    "en": {"lang": "en", "title": "Report a city problem", "map": "Map", "switch": "中文", "other": "zh",
           "category": "Category",
           "where": "Location (longitude, latitude)", "lon": "Longitude", "lat": "Latitude", "locate": "Locate me",
           "description": "Description", "address": "Address (optional)", "photo": "Photo (optional)",
           "contact": "Contact (kept private)",
           "as_public": "You report anonymously (your contact stays private); grid workers sign in first",
           "as_user": "You report as {name}",
           "send": "Report", "error": "Error", "no_gps": "This browser cannot locate you; type the coordinates",
           "case_id": "Case", "unit": "Responsible unit", "zone": "Zone", "routed_by": "Routed by",
           "status": "State", "duplicate": "Linked to this open case", "deadline": "Due",
           "sent": "Reported", "linked": "This problem is already being handled: your report was linked to its case",
           "date": "{Mon} {D}, {hh}:{mm}", "date_year": "{Mon} {D}, {Y}, {hh}:{mm}", "details": "Details",
           "fields": {}, "errors": {"network": "The network is down: the report was not sent; try again later"},
           "methods": {"zone": "inside the zone", "nearest": "nearest zone (GPS error)",
                       "building": "the building's unit", "category": "category rule",
                       "fallback": "territorial fallback", "unlocated": "no location"}},
}


CASES = {
    "zh": {"lang": "zh", "title": "案卷工作台", "map": "地图", "report": "上报问题", "switch": "English", "other": "en",
           "all_states": "全部状态", "category": "类别", "load": "查询", "total": "共 {n} 件",
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
           "all_states": "all states", "category": "Category", "load": "Show",
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


# Every map page's basemaps and zoom hint (webmap/maps.py map_config, static_zm/zonemap-map.js).
MAP = {
    "zh": {"zoom_in": "放大地图以显示{layers}", "base_none": "本地道路与建筑（离线可用）",
           "bases": {"osm": "OpenStreetMap", "tianditu": "天地图", "amap": "高德地图"}},
    "en": {"zoom_in": "Zoom in to see {layers}", "base_none": "Our roads and buildings (works offline)",
           "bases": {"osm": "OpenStreetMap", "tianditu": "Tianditu (天地图)", "amap": "AMap (高德)"}},
}


def map_labels(lang: str | None) -> dict:
    """The layers' names (those of the map page) and the basemaps' words."""
    lang = "en" if pick_lang(lang) == "en" else "zh"
    return {**LABELS[lang]["layers"], **MAP[lang]}


# The planner's workspace (webmap/planner_pages.py): the header every page of base.html shows,
# the login form, the planner page and the units page. Zone kinds, QA findings and kinds of
# change are named here so that no page shows a raw code.
WORKSPACE = {
    "zh": {
        "lang": "zh", "switch": "English", "other": "en", "brand": "zonemap",
        "nav": {"map": "地图", "inspector": "巡查地图", "unit": "本单位", "planner": "责任区规划", "units": "责任单位",
                "cases": "案卷工作台",
                "field": "巡查检查", "report": "上报问题"},
        "login": "登录", "logout": "退出", "roles": ROLE_ZH,
        "signin": {"title": "登录", "name": "用户名", "password": "密码", "submit": "登录",
                   "hint": "账号由管理员用 zonemap users add 开通"},
        "kinds": {"frontage": "门前三包", "unit": "单位责任区", "site": "施工现场", "public": "属地兜底（公共区域）"},
        "qa": {"overlap": "重叠", "gap": "缝隙", "sliver": "碎片", "no_unit": "无责任单位",
               "placeholder_unit": "占位单位（待补名称）"},
        "changes": {"assign": "改派", "geometry": "修改形状", "split": "切分", "merge": "合并", "restore": "恢复",
                    "generate": "生成", "import": "导入", "create": "新建"},
        "planner": {
            "title": "责任区规划", "color_by": "着色", "by_kind": "按类型", "by_unit": "按责任单位", "legend": "图例",
            "zones": "责任区", "qa_layer": "质检问题", "osm": "OpenStreetMap 底图（需联网）",
            "search": "搜索单位名称、责任区编号或路段", "search_go": "搜索", "no_results": "无结果",
            "found_zones": "责任区", "found_units": "单位", "found_streets": "路段",
            "code": "编号", "kind": "类型", "unit": "责任单位", "person": "责任人", "phone": "电话",
            "co_unit": "协同单位", "bounds": "四至", "area": "面积", "frontage": "临街长度", "depth": "进深",
            "street": "路段", "duties": "责任内容", "version": "版本", "valid_from": "生效日期",
            "problems": "未结问题", "none": "无", "placeholder": "占位名称，待补充",
            "reassign": "改派责任单位", "pick_unit": "搜索责任单位…", "note": "说明（原因）", "save": "保存",
            "cancel": "取消", "reshape": "修改形状", "preview": "预览影响", "confirm": "确认保存", "split": "切分",
            "merge": "合并", "draw": "绘制新责任区", "history": "历史版本", "restore": "恢复此版本",
            "trimmed": "保存后将被裁剪的相邻责任区", "no_trim": "不影响相邻责任区", "lost": "减少",
            "saved": "已保存：{code} 第 {v} 版", "pick_kind": "责任区类型",
            "reshape_hint": "拖动顶点修改形状，然后预览影响并确认保存",
            "split_hint": "在地图上画一条穿过该责任区的线（点击加点，再点最后一点结束）",
            "merge_hint": "点击要并入的相邻责任区", "draw_hint": "在空白处点击绘制多边形，点击起点结束",
            "merge_with": "与 {code} 合并", "pick_unit_first": "请先从列表中选择责任单位",
            "when": "时间", "by": "操作人", "change": "变更", "valid_to": "失效日期", "m": "米", "m2": "平方米",
            "conflict": "冲突", "select_zone": "点击地图上的责任区查看详情"},
        "units": {
            "title": "责任单位", "search": "搜索名称、编号或信用代码", "placeholder_only": "仅占位名称",
            "downloads": "下载", "ledger_xlsx": "责任区台账（Excel）", "ledger_csv": "台账（CSV）",
            "zones_gpkg": "责任区图层（GeoPackage，QGIS 可开）", "zones_geojson": "责任区（GeoJSON）",
            "name": "名称", "type": "类型", "credit_code": "统一社会信用代码", "person": "责任人", "phone": "电话",
            "zones": "责任区数", "placeholder": "占位", "save": "保存", "note": "说明（原因）",
            "merge": "合并到真实单位", "merge_into": "搜索要并入的单位…", "merge_go": "合并",
            "merged": "已合并到 {name}", "saved": "已保存", "total": "共 {n} 个", "prev": "上一页",
            "next": "下一页", "edit": "编辑单位"},
    },
    "en": {
        "lang": "en", "switch": "中文", "other": "zh", "brand": "zonemap",
        "nav": {"map": "Map", "inspector": "Inspector's map", "unit": "My unit", "planner": "Zone planner",
                "units": "Units", "cases": "Case desk",
                "field": "Patrol & inspect", "report": "Report a problem"},
        "login": "Sign in", "logout": "Sign out",
        "roles": {"public": "public", "inspector": "inspector", "dispatcher": "dispatcher", "unit": "unit",
                  "planner": "planner", "admin": "admin"},
        "signin": {"title": "Sign in", "name": "User name", "password": "Password", "submit": "Sign in",
                   "hint": "Accounts are opened by an admin with zonemap users add"},
        "kinds": {"frontage": "Frontage (门前三包)", "unit": "Unit ground", "site": "Construction site",
                  "public": "Public (street office)"},
        "qa": {"overlap": "Overlap", "gap": "Gap", "sliver": "Sliver", "no_unit": "No unit",
               "placeholder_unit": "Placeholder unit"},
        "changes": {"assign": "reassigned", "geometry": "reshaped", "split": "split", "merge": "merged",
                    "restore": "restored", "generate": "generated", "import": "imported", "create": "created"},
        "planner": {
            "title": "Zone planner", "color_by": "Colour", "by_kind": "by kind", "by_unit": "by unit",
            "legend": "Legend", "zones": "Zones", "qa_layer": "QA findings", "osm": "OpenStreetMap tiles (online)",
            "search": "Search unit name, zone code or street", "search_go": "Search", "no_results": "Nothing found",
            "found_zones": "Zones", "found_units": "Units", "found_streets": "Streets",
            "code": "Code", "kind": "Kind", "unit": "Responsible unit", "person": "Person", "phone": "Phone",
            "co_unit": "Co-responsible unit", "bounds": "Bounds (四至)", "area": "Area", "frontage": "Frontage",
            "depth": "Depth", "street": "Street", "duties": "Duties", "version": "Version",
            "valid_from": "Valid from", "problems": "Open problems", "none": "none",
            "placeholder": "placeholder name, to be filled in",
            "reassign": "Reassign", "pick_unit": "Search a unit…", "note": "Note (why)", "save": "Save",
            "cancel": "Cancel", "reshape": "Reshape", "preview": "Preview", "confirm": "Save", "split": "Split",
            "merge": "Merge", "draw": "Draw a zone", "history": "History", "restore": "Restore this version",
            "trimmed": "Neighbours trimmed by this save", "no_trim": "No neighbour is touched", "lost": "loses",
            "saved": "Saved: {code} version {v}", "pick_kind": "Zone kind",
            "reshape_hint": "Drag the vertices, then preview and save",
            "split_hint": "Draw a line across the zone (click to add points, click the last one to finish)",
            "merge_hint": "Click the neighbouring zone to merge in", "draw_hint": "Click in an empty place to "
            "draw a polygon; click the first point to finish", "merge_with": "Merge with {code}",
            "pick_unit_first": "Pick a unit from the list first", "when": "When", "by": "By", "change": "Change",
            "valid_to": "Valid to", "m": "m", "m2": "m²", "conflict": "Conflict",
            "select_zone": "Click a zone on the map for its details"},
        "units": {
            "title": "Units", "search": "Search name, id or credit code", "placeholder_only": "placeholders only",
            "downloads": "Downloads", "ledger_xlsx": "Zone ledger (Excel)", "ledger_csv": "Ledger (CSV)",
            "zones_gpkg": "Zones (GeoPackage, opens in QGIS)", "zones_geojson": "Zones (GeoJSON)",
            "name": "Name", "type": "Type", "credit_code": "Credit code (统一社会信用代码)", "person": "Person",
            "phone": "Phone", "zones": "Zones", "placeholder": "placeholder", "save": "Save", "note": "Note (why)",
            "merge": "Merge into a real unit", "merge_into": "Search the unit to merge into…", "merge_go": "Merge",
            "merged": "Merged into {name}", "saved": "Saved", "total": "{n} units", "prev": "Previous",
            "next": "Next", "edit": "Edit unit"},
    },
}


def workspace_labels(lang: str | None) -> dict:
    return WORKSPACE.get((lang or "zh").lower(), WORKSPACE["zh"])


# The inspector's phone page /field (webmap/field.py): a patrol track and an inspection form.
FIELD = {
    "zh": {
        "title": "巡查与检查", "patrol": "巡查轨迹（走）", "inspection": "责任区检查（评）",
        "start": "开始巡查", "stop": "结束并上传", "retry": "重新上传", "points": "已记录 {n} 个点，约 {m} 米",
        "recording": "正在记录轨迹…请保持页面打开", "idle": "点击“开始巡查”记录本次巡查的轨迹",
        "too_few": "轨迹点太少（至少 2 个），未上传", "sent_track": "轨迹已上传：{n} 个点，{m} 米，{from} 至 {to}",
        "sending": "正在上传…", "no_gps": "此浏览器不能定位",
        "gps_denied": "无法定位：{why}。请允许此页面使用位置信息",
        "zone": "责任区编号", "zone_hint": "输入编号，或点击“离我最近的责任区”", "nearest": "离我最近的责任区",
        "locating": "正在定位…", "no_zone": "此处没有责任区（{unit}属地兜底）", "found": "{code} · {unit}",
        "sheet": "评分表（每项 0–100 分）", "weight": "权重 {w}", "total": "总分 {total}（{mark} 分合格）",
        "pass": "合格", "fail": "不合格", "remarks": "备注（可选）", "submit": "提交检查",
        "saved": "已保存 {id}：总分 {total}，{result}（评分表 {version}）",
        "need_zone": "请先填写或选择责任区", "need_scores": "请给每一项打分（0–100）",
        "errors": {"400": "填写有误：{msg}", "401": "登录已失效，请重新登录", "403": "当前账号不能记录巡查与检查",
                   "404": "没有这个责任区：{msg}", "413": "内容太大", "422": "轨迹有点不在本市服务范围内",
                   "429": "太频繁，请稍后再试", "500": "服务器出错，未保存，请稍后重试",
                   "503": "服务暂时不可用，未保存，请稍后重试", "network": "网络不通，未发出，请稍后重试"},
    },
    "en": {
        "title": "Patrols and inspections", "patrol": "Patrol track", "inspection": "Zone inspection",
        "start": "Start patrol", "stop": "Stop and send", "retry": "Send again", "points": "{n} points, about {m} m",
        "recording": "Recording the track… keep this page open", "idle": "Tap “Start patrol” to record your patrol",
        "too_few": "Too few points (at least 2); nothing sent",
        "sent_track": "Track sent: {n} points, {m} m, {from} to {to}", "sending": "Sending…",
        "no_gps": "This browser cannot locate you", "gps_denied": "Cannot locate you: {why}. Allow this page to "
        "use your location", "zone": "Zone code", "zone_hint": "Type a code, or tap “Nearest zone”",
        "nearest": "Nearest zone", "locating": "Locating…", "no_zone": "No zone here (fallback to {unit})",
        "found": "{code} · {unit}", "sheet": "Score sheet (0–100 per item)", "weight": "weight {w}",
        "total": "Total {total} (pass at {mark})", "pass": "passed", "fail": "failed",
        "remarks": "Remarks (optional)", "submit": "Save inspection",
        "saved": "Saved {id}: total {total}, {result} (sheet {version})",
        "need_zone": "Type or pick a zone first", "need_scores": "Score every item (0–100)",
        "errors": {"400": "Check the form: {msg}", "401": "Signed out; sign in again",
                   "403": "This account may not record patrols or inspections", "404": "Not found: {msg}",
                   "413": "Too large", "422": "A point of the track is outside the service area",
                   "429": "Too many requests; try again shortly", "500": "Server error; nothing saved, try again",
                   "503": "Service unavailable; nothing saved, try again", "network": "No network; nothing sent"},
    },
}


def field_labels(lang: str | None) -> dict:
    return FIELD.get((lang or "zh").lower(), FIELD["zh"])


def popup_values(lang: str) -> dict:
    """What the map's popups show for a coded value (kind, state, how a case was routed): words in
    the page's language, never the code."""
    zh = (lang or "zh") != "en"
    states = STATE_ZH if zh else {k: k.replace("_", " ") for k in STATE_ZH}
    return {"kind": WORKSPACE["zh" if zh else "en"]["kinds"], "status": states,
            "routed_by": REPORT["zh" if zh else "en"]["methods"]}


# The inspector's map /inspector and the unit's page /unit (webmap/inspector_pages.py, with
# templates/case_panel.html). Moves, states, zone kinds and date formats are the ones the case
# desk, the planner and the report page name, so one word means one thing everywhere.
INSPECTOR = {
    "zh": {
        "inspector_title": "巡查地图", "unit_title": "本单位责任区",
        "since": "上报起始日期", "until": "上报截止日期",
        "category": "问题类别", "category_hint": "类别编号或名称，如 暴露垃圾", "status": "状态",
        "all_states": "全部状态", "unit": "责任单位", "unit_hint": "责任单位名称或编号", "street": "路段",
        "street_hint": "路段名称", "grid": "单元网格", "grid_hint": "单元网格编码（15 位）", "apply": "查询",
        "today": "今日待办", "cases": "案卷",
        "case_id": "案卷号", "deadline": "本环节时限", "zone": "责任区", "description": "描述", "address": "地址",
        "reported": "上报时间", "layer_cases": "问题（按亮灯着色）", "layer_heat": "问题热力图",
        "layer_hot": "热点网格（Gi*，显著）", "layer_zones": "责任区（放大后显示）",
        "spots": {"hot99": "热点（99% 置信）", "hot95": "热点（95% 置信）", "hot90": "热点（90% 置信）",
                  "cold99": "冷点（99% 置信）", "cold95": "冷点（95% 置信）", "cold90": "冷点（90% 置信）"},
        "no_category": "没有名称含“{q}”的问题类别，请从列表中选择", "no_unit": "没有名称或编号含“{q}”的责任单位",
        "no_street": "没有名称含“{q}”的路段", "shown_all": "地图上共 {n} 件",
        "shown_some": "此范围共 {total} 件，地图仅显示 {n} 件，请放大或缩小筛选范围",
        "today_none": "此范围内没有超时或临期的案卷", "from_device": "按与我当前位置的距离排序",
        "from_centre": "无法定位，按与地图中心的距离排序",
        "photos": "照片", "photo_kinds": {"report": "上报照片", "before": "处置前", "after": "处置后", "photo": "照片"},
        "photo_before": "处置前照片", "photo_after": "处置后照片", "no_photos": "暂无照片",
        "light": "亮灯", "all_lights": "全部亮灯", "due_lights": "超时或临期（红、黄灯）",
        "cells_note": "此范围有 {total} 件，按网格汇总显示（数字为件数，颜色为最严重的亮灯）；放大地图查看单个案卷",
        "from": "从", "to": "至", "way": "导航前往", "away": "{d}，{dir}方向",
        "due_cut": "超时或临期案卷过多，仅按距离排列最近的一部分", "note": "意见", "steps": "办理过程",
        "actors": {"public": "公众（匿名）", "system": "系统"},
        "when": "时间", "who": "操作人", "action": "操作", "from_to": "状态变化", "no_moves": "当前身份无可办理的操作",
        "lights": {"green": "绿灯：正常", "yellow": "黄灯：临期", "red": "红灯：超时", "none": "已结束"},
        "prev": "上一页", "next": "下一页", "page_of": "第 {p}/{n} 页，共 {total} 件",
        "my_zones": "本单位责任区", "my_cases": "本单位案卷", "co_unit": "协同", "bounds": "四至",
        "duties": "责任内容", "area": "面积", "valid_from": "生效日期", "no_zones": "本单位当前没有责任区",
        "month": "本月", "reported_month": "本月上报", "on_time_rate": "按期结案率",
    },
    "en": {
        "inspector_title": "Inspector's map",
        "unit_title": "My unit's zones", "since": "Reported from",
        "until": "Reported until", "category": "Category", "category_hint": "Category code or name, e.g. 暴露垃圾",
        "status": "State", "all_states": "all states", "unit": "Unit", "unit_hint": "Unit name or id",
        "street": "Street", "street_hint": "Street name", "grid": "Grid cell",
        "grid_hint": "Grid cell code (15 digits)", "apply": "Show", "today": "Due today", "cases": "Cases",
        "case_id": "Case", "deadline": "Due", "zone": "Zone", "description": "Description", "address": "Address",
        "reported": "Reported", "layer_cases": "Problems (by light)", "layer_heat": "Heatmap of problems",
        "layer_hot": "Hot cells (Gi*, significant)", "layer_zones": "Zones (when zoomed in)",
        "spots": {"hot99": "hot spot (99 %)", "hot95": "hot spot (95 %)", "hot90": "hot spot (90 %)",
                  "cold99": "cold spot (99 %)", "cold95": "cold spot (95 %)", "cold90": "cold spot (90 %)"},
        "no_category": "No category is named like “{q}”: pick one from the list",
        "no_unit": "No unit's name or id holds “{q}”", "no_street": "No street is named like “{q}”",
        "shown_all": "{n} cases on the map", "shown_some": "{total} cases here, {n} on the map: zoom in or filter",
        "today_none": "No overdue or nearly due case here", "from_device": "Sorted by distance from you",
        "from_centre": "Cannot locate you: sorted by distance from the map's centre",
        "photos": "Photos", "photo_kinds": {"report": "reported", "before": "before", "after": "after",
                                            "photo": "photo"},
        "photo_before": "Photo before", "photo_after": "Photo after", "no_photos": "No photo yet",
        "light": "Light", "all_lights": "all lights", "due_lights": "overdue or nearly due (red, yellow)",
        "cells_note": "{total} cases here, counted per cell (the number of cases; the colour: the worst light); "
                      "zoom in to see each case",
        "from": "from", "to": "to", "way": "Directions", "away": "{d} {dir}",
        "due_cut": "Too many overdue or nearly due cases: only the nearest are listed",
        "note": "Note", "steps": "Steps",
        "actors": {"public": "the public (anonymous)", "system": "the system"},
        "when": "When", "who": "Who", "action": "Action",
        "from_to": "State change", "no_moves": "No move for your role",
        "lights": {"green": "green: on time", "yellow": "yellow: nearly due", "red": "red: overdue", "none": "ended"},
        "prev": "Previous", "next": "Next", "page_of": "page {p} of {n}, {total} cases",
        "my_zones": "My unit's zones", "my_cases": "My unit's cases", "co_unit": "co-responsible",
        "bounds": "Bounds (四至)", "duties": "Duties", "area": "Area", "valid_from": "Valid from",
        "no_zones": "Your unit has no zone in force",
        "month": "This month", "reported_month": "reported", "on_time_rate": "closed on time",
    },
}


def inspector_labels(lang: str | None) -> dict:
    """The labels of /inspector and /unit, with the states, moves, zone kinds and date formats."""
    lang = pick_lang(lang)
    zh = lang == "zh"
    moves = CASES["zh"]["actions"]
    return {**INSPECTOR[lang], "lang": lang, "actions": moves if zh else {a: a.replace("_", " ") for a in moves},
            "states": STATE_ZH if zh else {s: s.replace("_", " ") for s in STATE_ZH},
            "kinds": WORKSPACE[lang]["kinds"], "date": REPORT[lang]["date"], "date_year": REPORT[lang]["date_year"]}
