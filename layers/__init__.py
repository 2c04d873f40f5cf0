"""The data: layer schemas, stores, import, rules. May import geo/, never webmap/ or scripts/."""
