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
           "truncated": "此范围要素过多，仅显示部分；请放大"},
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
           "truncated": "Too many features here, some are not shown; zoom in"},
}


def labels(lang: str | None) -> dict:
    return LABELS.get((lang or "zh").lower(), LABELS["zh"])
