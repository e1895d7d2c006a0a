"""Benchmarks: one command per benchmark, printing figures."""
