from pathlib import Path

from bench.results import (
    format_ratio,
    merge_size,
    ratio,
    record_section,
    render_markdown,
    rows_per_second,
    samples_line,
    stage_table,
    with_sections_kept,
)


def a_result(size: int, extract_seconds: float = 2.0) -> dict:
    return {
        "size": size,
        "recorded_at": "2026-03-02 00:00 UTC",
        "machine": {
            "cpu_model": "Test CPU",
            "cores": 2,
            "ram_gib": 8.0,
            "python": "3.11.7",
            "versions": {"duckdb": "2.0.0"},
        },
        "load_average_at_start": [0.5, 0.25, 0.125],
        "dataset": {
            "seed": 42,
            "lead_rows": size,
            "event_rows": 10 * size,
            "outcome_rows": 10,
            "total_rows": 11 * size + 10,
            "events_per_lead": 10.0,
            "generate_seconds": 1.0,
        },
        "fixed_costs": [{"name": "dbt parse", "seconds": 8.0}],
        "stages": [
            {
                "stage": "extract",
                "rows": 1000,
                "seconds": extract_seconds,
                "peak_rss_bytes": 200 * 1024 * 1024,
                "lower_bound": {"name": "extract_read_csv", "seconds": 0.5, "rows": 1000},
                "incremental": {"name": "extract", "seconds": 0.5, "rows": 10},
            },
            {
                "stage": "handoff",
                "rows": 0,
                "seconds": 1.0,
                "peak_rss_bytes": None,
                "lower_bound": None,
                "incremental": None,
            },
        ],
        "transform_agreement": {
            "stage_counts": {"mql": [10, 11], "new": [5, 5]},
            "same_stage_share": 0.99,
            "largest_count_difference_share": 0.01,
            "tolerance_share": 0.005,
            "within_tolerance": False,
        },
        "incremental": {"share": 0.01, "new_events": 100},
    }


def test_ratio_is_unknown_without_both_numbers_or_with_a_zero_denominator():
    assert ratio(3.0, 1.5) == 2.0
    assert ratio(None, 1.0) is None
    assert ratio(1.0, None) is None
    assert ratio(1.0, 0.0) is None


def test_rows_per_second():
    assert rows_per_second(1000, 0.5) == 2000
    assert rows_per_second(0, 1.0) == 0
    assert rows_per_second(10, 0) is None


def test_format_ratio_keeps_two_decimals_below_ten():
    assert format_ratio(4.666) == "4.67x"
    assert format_ratio(174.4) == "174x"
    assert format_ratio(None) == "—"


def test_stage_table_row_has_rate_ratios_and_memory():
    lines = stage_table(a_result(1000))
    assert lines[2] == (
        "| extract | 1,000 | 2.00 | 500 | extract_read_csv | 0.50 | 4.00x | 200 | 0.50 | 0.25x |"
    )


def test_stage_without_lower_bound_or_incremental_shows_dashes():
    handoff = stage_table(a_result(1000))[3]
    assert handoff == "| handoff | 0 | 1.00 | 0 | — | — | — | — | — | — |"


def test_merge_replaces_the_same_size_and_keeps_others_in_size_order():
    document = merge_size({}, a_result(100_000))
    document = merge_size(document, a_result(10_000))
    document = merge_size(document, a_result(100_000, extract_seconds=9.0))
    assert list(document["sizes"]) == ["10000", "100000"]
    assert document["sizes"]["100000"]["stages"][0]["seconds"] == 9.0
    assert document["sizes"]["10000"]["stages"][0]["seconds"] == 2.0


def test_markdown_has_a_section_per_size_with_machine_and_agreement():
    document = merge_size(merge_size({}, a_result(10_000)), a_result(1_000))
    text = render_markdown(document, "# Benchmarks\n\nHow.\n")
    assert text.startswith("# Benchmarks\n\nHow.\n\n## 1,000 leads")
    assert text.index("## 1,000 leads") < text.index("## 10,000 leads")
    assert "Test CPU, 2 cores, 8.0 GiB RAM; Python 3.11.7; duckdb 2.0.0." in text
    assert "0.50 / 0.25 / 0.12" in text
    assert "| dbt parse | 8.00 |" in text
    assert "mql 10 vs 11" in text and "OUTSIDE the 0.5% tolerance" in text


def test_the_transform_after_the_first_cycle_is_reported_against_the_full_build():
    result = a_result(1_000)
    result["stages"][1]["details"] = {"tasks_created": 1_200}
    result["stages"] += [
        {**result["stages"][0], "stage": "transform", "seconds": 40.0},
        {
            **result["stages"][1],
            "stage": "nurture",
            "details": {"sent": 9_000, "follow_ups": 9_000},
        },
    ]
    result["transform_after_first_cycle"] = {"name": "transform", "seconds": 10.0, "rows": 1000}

    text = render_markdown(merge_size({}, result), "# Benchmarks\n")

    assert (
        "Transform after the first hand-off and nurture (1,200 hand-off tasks, 9,000 emails, "
        "9,000 follow-up tasks written, no new raw data, the same clock): 10.00 s, 0.25x of the "
        "full build." in text
    )


def test_results_recorded_before_the_first_cycle_was_measured_have_no_such_line():
    text = render_markdown(merge_size({}, a_result(1_000)), "# Benchmarks\n")

    assert "after the first hand-off" not in text


def a_result_with_transform_samples() -> dict:
    result = a_result(1_000)
    result["stages"].append(
        {
            **result["stages"][0],
            "stage": "transform",
            "seconds": 120.0,
            "samples": [131.0, 108.0, 120.0],
            "lower_bound": {
                "name": "transform_one_sql",
                "seconds": 31.0,
                "rows": 1000,
                "samples": [31.0, 30.5, 33.0],
            },
            "incremental": {
                "name": "transform",
                "seconds": 30.0,
                "rows": 1000,
                "samples": [27.0, 30.0, 36.0],
            },
        }
    )
    return result


def test_transform_samples_are_listed_with_the_ratio_of_each_pair():
    assert samples_line(a_result_with_transform_samples()) == (
        "Transform samples (the table shows medians): full build 131, 108 and 120 s; its lower "
        "bound 31.00, 30.50 and 33.00 s; incremental 27.00, 30.00 and 36.00 s, each taken right "
        "after the full build listed in the same place. Incremental / full: 0.25x from the "
        "medians; 0.21x, 0.28x and 0.30x pair by pair."
    )


def test_the_report_carries_the_samples_line_and_a_single_measurement_has_none():
    text = render_markdown(merge_size({}, a_result_with_transform_samples()), "# Benchmarks\n")
    assert "Transform samples (the table shows medians)" in text
    assert "| transform | 1,000 | 120 |" in text

    assert samples_line(a_result(1_000)) is None


def test_a_recorded_section_replaces_its_earlier_self_and_keeps_the_others(
    tmp_path: Path,
) -> None:
    report = tmp_path / "benchmarks.md"
    report.write_text("# Benchmarks\n\n## Event webhook\n\nold\n")
    record_section(report, "## Scoring fit", "## Scoring fit\n\nfirst\n")
    record_section(report, "## Scoring fit", "## Scoring fit\n\nsecond\n")
    assert report.read_text() == (
        "# Benchmarks\n\n## Event webhook\n\nold\n\n## Scoring fit\n\nsecond\n"
    )
    record_section(report, "## Event webhook", "## Event webhook\n\nnew\n")
    assert report.read_text() == (
        "# Benchmarks\n\n## Event webhook\n\nnew\n\n## Scoring fit\n\nsecond\n"
    )


def test_make_bench_keeps_the_sections_other_benchmarks_recorded():
    earlier = (
        "# Benchmarks\n\nMethod.\n\n## 10,000 leads\n\nold figures\n\n"
        "## Event webhook\n\n10,000 posts\n\n## Scoring fit\n\n1M leads\n"
    )
    rewritten = "# Benchmarks\n\nMethod.\n\n## 10,000 leads\n\nnew figures\n"

    kept = with_sections_kept(rewritten, earlier)

    assert kept == (
        "# Benchmarks\n\nMethod.\n\n## 10,000 leads\n\nnew figures\n\n"
        "## Event webhook\n\n10,000 posts\n\n## Scoring fit\n\n1M leads\n"
    )
