"""Data-quality checks on the dbt marts before anything reaches sales or a lead's inbox.

``flows.checks.gate.run_gate`` is the entry point; the expectations themselves are reviewed
files in the GX project under ``expectations/gx/``.
"""
