"""Benchmarks: the pipeline's stages measured against their lower bounds (``make bench``).

Not timed tests: nothing here asserts a duration. Results go to docs/benchmarks.md and
docs/benchmarks.json.
"""
