"""Markdown summary of benchmarks/speedup_zoo_results.jsonl (written by speedup_zoo.py)."""
