"""Sweeps: a TOML file of benchmark runs expanded into jobs (one `runner bench` each), spread
over a Ray cluster and gathered into one results folder. Importing the package loads nothing
heavy: Ray is imported only where a sweep runs or asks the cluster."""
