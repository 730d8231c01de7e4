"""Benchmarks: LeadFlow's stages measured side by side with their lower bounds (not tests)."""
