"""Implementations of the benchmarked ops, one provider per file; vendors add theirs through the
`asicperf.microbench` entry-point group, as targets do."""
