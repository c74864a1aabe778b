"""Models, datasets and workloads, and the one place that turns a model name into a file."""
