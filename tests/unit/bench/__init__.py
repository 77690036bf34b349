"""Tests of the benchmarks' shared kit."""
