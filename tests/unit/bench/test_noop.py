from pathlib import Path
from typing import Any

from bench.machine import describe_machine
from bench.noop import breakdown, copy_data, section


def test_restoring_the_data_folder_leaves_nothing_of_the_run_in_between(tmp_path: Path):
    saved, data = tmp_path / "saved", tmp_path / "data"
    (data / "inbox").mkdir(parents=True)
    (data / "inbox" / "leads__crm.csv").write_text("the inbox")
    (data / "dbt").mkdir()
    (data / "dbt" / "inputs.sha256").write_text("kept")
    (data / "warehouse.duckdb").write_text("before")
    copy_data(data, saved)
    (data / "warehouse.duckdb").write_text("after")
    (data / "warehouse.duckdb.wal").write_text("a log the saved folder never had")
    (data / "dbt" / "inputs.sha256").unlink()

    copy_data(saved, data)

    assert not (saved / "inbox").exists()  # a run only reads it
    assert sorted(path.name for path in data.rglob("*")) == [
        "dbt", "inbox", "inputs.sha256", "leads__crm.csv", "warehouse.duckdb",
    ]  # fmt: skip
    assert (data / "warehouse.duckdb").read_text() == "before"


def run(wall: float, transform: float, gx: float | None) -> dict[str, Any]:
    return {
        "wall_seconds": wall,
        "start_seconds": 0.5,
        "import_seconds": 2.0,
        "flow_seconds": wall - 2.5,
        "flow_overhead_seconds": 1.0,
        "stages": {"extract": 1.0, "transform": transform, "gate": 1.0, "handoff": 1.0,
                   "nurture": 1.0},
        "dbt_seconds": {"parse": 2.0, "build": transform - 4},
        "gx_validation_seconds": gx,
    }  # fmt: skip


def test_the_section_gives_medians_ratios_pair_by_pair_and_sizes_not_measured_yet():
    pairs = [
        {"as_usual": run(30.0, 14.0, 4.0), "noop": run(15.0, 8.0, None)},
        {"as_usual": run(40.0, 16.0, 4.5), "noop": run(16.0, 9.0, None)},
    ]
    result = {
        "size": 5000,
        "recorded_at": "2026-12-07 14:00 UTC",
        "machine": describe_machine(),
        "load_average_at_start": [1.0, 1.0, 1.0],
        "first": run(60.0, 30.0, 5.0),
        "settling": run(35.0, 15.0, 4.0),
        "pairs": pairs,
    }

    text = section({"sizes": {"5000": result}})

    assert "| total (wall) | 35.00 | 15.50 |" in text
    assert "| transform | 15.00 | 8.50 |" in text
    assert "|   of which dbt source freshness | — | — |" in text  # not run: a dash
    assert "|   of which GX validation | 4.25 | — |" in text
    assert "pair by pair: 0.50x, 0.40x" in text
    assert "### 1,000,000 leads\n\nNot measured yet: `make bench-noop SIZE=1000000`" in text
    assert list(breakdown(pairs[0]["noop"]))[-1] == "total (wall)"
