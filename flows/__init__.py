"""Prefect flows: sequencing and fan-out only."""
