from pathlib import Path

import pytest

from bench.run import (
    AS_OF,
    copy_transform_state,
    main,
    measure_transform_pairs,
    run_stages,
    seconds_of,
)


def test_one_sample_is_reported_as_it_is():
    assert seconds_of([12.5]) == {"seconds": 12.5}


def test_several_samples_are_reported_by_their_median_and_kept():
    assert seconds_of([30.0, 10.0, 20.0]) == {"seconds": 20.0, "samples": [30.0, 10.0, 20.0]}


def test_copying_the_transform_state_replaces_the_warehouse_and_dbt_folder(tmp_path: Path):
    source, target = tmp_path / "saved", tmp_path / "data"
    (source / "dbt" / "state").mkdir(parents=True)
    (source / "warehouse.duckdb").write_text("saved warehouse")
    (source / "dbt" / "state" / "manifest.json").write_text("saved manifest")
    (target / "dbt" / "target").mkdir(parents=True)
    (target / "warehouse.duckdb").write_text("changed warehouse")
    (target / "warehouse.duckdb.wal").write_text("changed log")
    (target / "dbt" / "target" / "run_results.json").write_text("changed results")
    (target / "inbox").mkdir()

    copy_transform_state(source, target)

    assert (target / "warehouse.duckdb").read_text() == "saved warehouse"
    assert not (target / "warehouse.duckdb.wal").exists()
    assert (target / "dbt" / "state" / "manifest.json").read_text() == "saved manifest"
    assert not (target / "dbt" / "target").exists()
    assert (target / "inbox").is_dir()


def test_fewer_than_one_transform_sample_is_refused_before_anything_runs(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--size", "10", "--transform-samples", "0"])

    assert exit_info.value.code == 2
    assert "--transform-samples must be 1 or more, not 0" in capsys.readouterr().err


def test_a_pass_saves_the_state_the_transform_started_from_and_leaves_its_bound_to_the_pairs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    warehouse = a_warehouse_file(tmp_path)
    seen = record_probes(monkeypatch, warehouse)
    stages = (("extract", "extract_read_csv"), ("transform", "transform_one_sql"), ("gate", None))

    measured = run_stages(
        stages, AS_OF, tmp_path, {}, with_lower_bounds=True, transform_state=tmp_path / "saved"
    )

    assert seen == [
        ("extract", ""),
        ("extract_read_csv", "extract;"),
        ("transform", "extract;extract_read_csv;"),
        ("gate", "extract;extract_read_csv;transform;"),
    ]
    assert (tmp_path / "saved" / "warehouse.duckdb").read_text() == "extract;extract_read_csv;"
    assert [entry["stage_samples"] for entry in measured] == [[1.0], [3.0], [4.0]]
    assert measured[0]["bound_samples"] == [2.0]
    assert "bound" not in measured[1]


def test_full_and_incremental_transforms_are_sampled_in_turn_each_from_its_saved_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    warehouse = a_warehouse_file(tmp_path)
    seen = record_probes(monkeypatch, warehouse)
    full_state, incremental_state = tmp_path / "full-state", tmp_path / "incremental-state"
    for state, content in ((full_state, "raw;"), (incremental_state, "raw;built;new events;")):
        state.mkdir()
        (state / "warehouse.duckdb").write_text(content)

    full, incremental = measure_transform_pairs(
        full_state, incremental_state, tmp_path, {}, bound="transform_one_sql", samples=2
    )

    assert seen == [
        ("transform", "raw;"),
        ("transform_one_sql", "raw;transform;"),
        ("transform", "raw;built;new events;"),
        ("transform", "raw;"),
        ("transform_one_sql", "raw;transform;"),
        ("transform", "raw;built;new events;"),
    ]
    assert (full["stage_samples"], full["bound_samples"]) == ([1.0, 4.0], [2.0, 5.0])
    assert (incremental["stage_samples"], incremental["bound_samples"]) == ([3.0, 6.0], [])
    assert warehouse.read_text() == "raw;built;new events;transform;"


def a_warehouse_file(tmp_path: Path) -> Path:
    warehouse = tmp_path / "data" / "warehouse.duckdb"
    warehouse.parent.mkdir(parents=True)
    warehouse.write_text("")
    return warehouse


def record_probes(monkeypatch: pytest.MonkeyPatch, warehouse: Path) -> list[tuple[str, str]]:
    """Stand in for the probes (the real ones run in `make bench`): each appends its name to the warehouse file and reports, as its
    seconds, how many probes ran so far; the list returned records (probe, what it found)."""
    seen: list[tuple[str, str]] = []

    def probe(name: str, *_args: object) -> dict:
        seen.append((name, warehouse.read_text()))
        warehouse.write_text(warehouse.read_text() + name + ";")
        return {"seconds": float(len(seen))}

    monkeypatch.setattr("bench.run.run_probe", probe)
    return seen
