"""The sending benchmark's section of docs/benchmarks.md: written from its JSON, kept once."""

from __future__ import annotations

import json

import pytest

import bench.send as send

RUN = {
    "recorded_at": "2026-12-07 01:11",
    "load_average": "9.65 / 11.78 / 10.44",
    "machine": {"cpu_model": "AMD EPYC", "cores": 2},
    "results": [
        {"probe": "render", "seconds": 54.6, "cpu_seconds": 6.6, "rows": 100_000,
         "peak_rss_bytes": 247 * 2**20, "details": {"shapes": 150}},
        {"probe": "request", "seconds": 93.4, "cpu_seconds": 11.7, "rows": 100_000,
         "peak_rss_bytes": 420 * 2**20, "details": {"requests": 150}},
    ],
}  # fmt: skip


def test_the_sending_section_is_rewritten_in_place(tmp_path, monkeypatch):
    results = tmp_path / "benchmarks-send.json"
    monkeypatch.setattr(send, "RESULTS_FILE", results)
    pipeline = "# Benchmarks\n\n## 10,000 leads\n\ntable\n"
    assert send.with_section(pipeline) == pipeline  # nothing recorded yet
    results.write_text(json.dumps({"sizes": {"100000": RUN}}))
    once = send.with_section(pipeline)
    assert once.startswith(pipeline) and once.count("## Sending") == 1
    assert "| request | 100,000 | 93.4 | 11.7 | 117 | 1.77x | 420 | requests 150 |" in once
    assert "load average at the start (1/5/15 min): 9.65 / 11.78 / 10.44" in once
    assert send.with_section(once) == once  # a pipeline bench rewrite keeps it, once


def test_sections_after_sending_are_kept(tmp_path, monkeypatch):
    results = tmp_path / "benchmarks-send.json"
    monkeypatch.setattr(send, "RESULTS_FILE", results)
    results.write_text(json.dumps({"sizes": {"100000": RUN}}))
    later = "\n## Event webhook\n\nits table\n"
    once = send.with_section("# Benchmarks\n\n## Sending\n\nold figures\n" + later)
    assert "old figures" not in once and once.endswith(later)
    assert once.index("## Sending") < once.index("## Event webhook")
    assert send.with_section(once) == once


@pytest.mark.slow
def test_the_sendgrid_probe_sends_every_due_email_through_the_double(tmp_path):
    (result,) = send.measure(600, tmp_path, ["sendgrid"])
    assert result["rows"] == 600
    assert result["details"]["accepted by the double"] == 600
    # Five tracks of three steps, fifty reps: every due email in a batch of its shape.
    assert result["details"]["requests"] >= 15
    assert result["details"]["double peak RSS MiB"] > 0
