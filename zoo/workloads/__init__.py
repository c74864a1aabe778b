"""Workload data files (TOML), one per zoo model; read by zoo.workload. The LLM workloads,
one per text-generation model, are in llm/; read by zoo.llm_workload."""
