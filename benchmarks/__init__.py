"""The performance harness (SPEC §10): measurements written to docs/benchmarks.md."""
