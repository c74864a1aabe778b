"""Workload data files (TOML), one per zoo model; read by zoo.workload."""
