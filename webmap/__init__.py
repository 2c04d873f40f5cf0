"""The web adapter: Flask app, pages and the JSON/GeoJSON API. Thin: parse, call layers/geo, serialise."""
