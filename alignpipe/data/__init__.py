"""Data: the built-in task world, external sources with column mapping, Parquet snapshots, chat encoding."""
