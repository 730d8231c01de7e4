"""Benchmark results: ratios, the JSON document merged per size, and the Markdown report.

Pure functions over plain dicts (the JSON shapes below), so the report can be rebuilt from
docs/benchmarks.json alone and runs of different sizes accumulate in one document.

A size's result::

    {"size": 10000, "recorded_at": "...", "machine": {...}, "dataset": {...},
     "fixed_costs": [{"name": ..., "seconds": ...}],
     "stages": [{"stage": "extract", "rows": ..., "seconds": ..., "peak_rss_bytes": ...,
                 "lower_bound": {"name": ..., "seconds": ..., "rows": ...} | None,
                 "incremental": {"seconds": ..., "rows": ...} | None}],
     "transform_agreement": {...}, "incremental": {...},
     "transform_after_first_cycle": {"seconds": ..., "rows": ...}}

A measurement taken several times (the transform and its lower bound) has "seconds": the median
of its samples, and "samples": [...].
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

JsonDict = dict[str, Any]
MIB = 1024 * 1024


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator``, or None when either is unknown or the denominator is 0."""
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def rows_per_second(rows: int | None, seconds: float | None) -> float | None:
    return ratio(None if rows is None else float(rows), seconds)


def merge_size(document: Mapping[str, Any], result: Mapping[str, Any]) -> JsonDict:
    """The document with ``result`` replacing any earlier result of the same size."""
    sizes = {**document.get("sizes", {}), str(result["size"]): dict(result)}
    return {"sizes": {key: sizes[key] for key in sorted(sizes, key=int)}}


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    return f"{seconds:.2f}" if seconds < 100 else f"{seconds:,.0f}"


def format_rate(rate: float | None) -> str:
    return "—" if rate is None else f"{rate:,.0f}"


def format_ratio(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.2f}x" if value < 10 else f"{value:,.0f}x"


def format_mib(size_bytes: int | None) -> str:
    return "—" if size_bytes is None else f"{size_bytes / MIB:,.0f}"


def stage_table(result: Mapping[str, Any]) -> list[str]:
    """The per-stage table of one size, as Markdown lines."""
    lines = [
        "| stage | rows | time (s) | rows/s | lower bound | lower bound (s) "
        "| x lower bound | peak RSS (MiB) | incremental (s) | incremental / full |",
        "|---|--:|--:|--:|---|--:|--:|--:|--:|--:|",
    ]
    for stage in result["stages"]:
        bound = stage.get("lower_bound") or {}
        incremental = stage.get("incremental") or {}
        lines.append(
            "| "
            + " | ".join(
                [
                    stage["stage"],
                    f"{stage['rows']:,}",
                    format_seconds(stage["seconds"]),
                    format_rate(rows_per_second(stage["rows"], stage["seconds"])),
                    bound.get("name", "—"),
                    format_seconds(bound.get("seconds")),
                    format_ratio(ratio(stage["seconds"], bound.get("seconds"))),
                    format_mib(stage.get("peak_rss_bytes")),
                    format_seconds(incremental.get("seconds")),
                    format_ratio(ratio(incremental.get("seconds"), stage["seconds"])),
                ]
            )
            + " |"
        )
    return lines


def fixed_cost_table(result: Mapping[str, Any]) -> list[str]:
    lines = ["| fixed cost | time (s) |", "|---|--:|"]
    lines += [
        f"| {cost['name']} | {format_seconds(cost['seconds'])} |" for cost in result["fixed_costs"]
    ]
    return lines


def agreement_line(agreement: Mapping[str, Any]) -> str:
    counts = ", ".join(
        f"{stage} {dbt:,} vs {hand:,}" for stage, (dbt, hand) in agreement["stage_counts"].items()
    )
    verdict = "within" if agreement["within_tolerance"] else "OUTSIDE"
    return (
        f"Transform lower bound vs `dim_leads`: {agreement['same_stage_share']:.2%} of leads in "
        f"the same stage; stage counts (dbt vs hand-written) {counts}; largest count difference "
        f"{agreement['largest_count_difference_share']:.2%} of leads, {verdict} the "
        f"{agreement['tolerance_share']:.1%} tolerance."
    )


def first_cycle_line(result: Mapping[str, Any]) -> str | None:
    """How long the transform took to take in the first hand-off's tasks and nurture's sends
    (no new raw data, the same clock); None for results recorded before it was measured."""
    after_cycle = result.get("transform_after_first_cycle")
    stages = {stage["stage"]: stage for stage in result["stages"]}
    if after_cycle is None or "transform" not in stages:
        return None
    written = []
    if "handoff" in stages:
        written.append(f"{stages['handoff']['details']['tasks_created']:,} hand-off tasks")
    if "nurture" in stages:
        nurture = stages["nurture"]["details"]
        written += [f"{nurture['sent']:,} emails", f"{nurture['follow_ups']:,} follow-up tasks"]
    full = stages["transform"]["seconds"]
    return (
        f"Transform after the first hand-off and nurture ({', '.join(written) or 'nothing'} "
        f"written, no new raw data, the same clock): {format_seconds(after_cycle['seconds'])} s, "
        f"{format_ratio(ratio(after_cycle['seconds'], full))} of the full build. The incremental "
        "transform above runs after it, so it sees the new events and the later clock only."
    )


def samples_line(result: Mapping[str, Any]) -> str | None:
    """The transform's samples behind the medians in the table and the incremental / full ratio
    of each pair (a full and an incremental sample taken one after the other); None when the
    transform was measured once."""
    transform = next((stage for stage in result["stages"] if stage["stage"] == "transform"), None)
    if transform is None or "samples" not in transform:
        return None
    full = transform["samples"]
    bound = (transform.get("lower_bound") or {}).get("samples")
    incremental = (transform.get("incremental") or {}).get("samples")
    parts = [f"full build {seconds_list(full)} s"]
    if bound:
        parts.append(f"its lower bound {seconds_list(bound)} s")
    line = f"Transform samples (the table shows medians): {'; '.join(parts)}"
    if not incremental:
        return line + "."
    median_ratio = ratio(transform["incremental"]["seconds"], transform["seconds"])
    pair_ratios = [
        format_ratio(ratio(later, first)) for first, later in zip(full, incremental, strict=True)
    ]
    return (
        f"{line}; incremental {seconds_list(incremental)} s, each taken right after the full "
        f"build listed in the same place. Incremental / full: {format_ratio(median_ratio)} from "
        f"the medians; {listed(pair_ratios)} pair by pair."
    )


def seconds_list(samples: list[float]) -> str:
    return listed([format_seconds(seconds) for seconds in samples])


def listed(items: list[str]) -> str:
    """'a, b and c'."""
    return ", ".join(items[:-1]) + " and " + items[-1] if len(items) > 1 else items[0]


def machine_line(result: Mapping[str, Any]) -> str:
    machine = result["machine"]
    versions = ", ".join(f"{name} {version}" for name, version in machine["versions"].items())
    load = " / ".join(f"{value:.2f}" for value in result["load_average_at_start"])
    return (
        f"{machine['cpu_model']}, {machine['cores']} cores, {machine['ram_gib']:.1f} GiB RAM; "
        f"Python {machine['python']}; {versions}. Load average at start (1/5/15 min): {load}."
    )


def size_section(result: Mapping[str, Any]) -> list[str]:
    dataset = result["dataset"]
    incremental = result["incremental"]
    lines = [
        f"## {result['size']:,} leads",
        "",
        f"Recorded {result['recorded_at']} on: {machine_line(result)}",
        "",
        f"Data set (seed {dataset['seed']}): {dataset['lead_rows']:,} lead rows, "
        f"{dataset['event_rows']:,} event rows ({dataset['events_per_lead']:.1f} per lead), "
        f"{dataset['outcome_rows']:,} outcome rows, {dataset['total_rows']:,} rows in all, "
        f"generated in {format_seconds(dataset['generate_seconds'])} s. Incremental run: "
        f"{incremental['new_events']:,} new events ({incremental['share']:.0%} of the events), "
        "the clock one hour later.",
        "",
        *stage_table(result),
        "",
        *fixed_cost_table(result),
        "",
        agreement_line(result["transform_agreement"]),
        "",
    ]
    for extra_line in (samples_line(result), first_cycle_line(result)):
        if extra_line is not None:
            lines[-1:-1] = ["", extra_line]
    return lines


def render_markdown(document: Mapping[str, Any], preamble: str) -> str:
    """docs/benchmarks.md: the method (``preamble``), then one section per size, smallest first."""
    sections = [line for result in document["sizes"].values() for line in size_section(result)]
    return "\n".join([preamble.rstrip(), "", *sections]).rstrip() + "\n"


def with_sections_kept(markdown: str, earlier: str) -> str:
    """``markdown`` followed by the ``## `` sections of ``earlier`` it does not have: what the
    benchmarks of their own (webhook, scoring fit) recorded survives ``make bench``."""
    headings = {line for line in markdown.splitlines() if line.startswith("## ")}
    kept = [
        "## " + section
        for section in earlier.split("\n## ")[1:]
        if "## " + section.splitlines()[0] not in headings
    ]
    return "\n".join([markdown.rstrip(), *("\n" + s.rstrip() for s in kept)]) + "\n"


def record_section(report: Path, title: str, section: str) -> None:
    """Write a section a benchmark of its own records (``title`` is its ``## `` heading) into
    docs/benchmarks.md, in place of an earlier one, else at the end; ``make bench`` keeps it
    (``with_sections_kept``)."""
    text = report.read_text()
    start = text.find(title)
    if start == -1:
        text = text.rstrip() + "\n\n"
        start = len(text)
    following = text.find("\n## ", start + len(title))
    rest = text[following + 1 :] if following != -1 else ""
    report.write_text(text[:start] + section + ("\n" + rest if rest else ""))
