"""Prefect task shells, one stage per file: validate, call one library `run`, record, return an ArtifactRef."""
