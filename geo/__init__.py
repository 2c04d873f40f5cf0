"""Pure spatial computation on GeoDataFrames and arrays: no files, no database, no web."""
