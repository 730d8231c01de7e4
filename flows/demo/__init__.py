"""Demo data: a synthetic, deterministic set of inbox files (``leadflow generate``)."""

from flows.demo.generate import GeneratedDataset, GenerateError, generate_dataset

__all__ = ["GenerateError", "GeneratedDataset", "generate_dataset"]
