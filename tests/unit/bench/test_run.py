from pathlib import Path

import pytest

from bench.run import AS_OF, copy_transform_state, main, run_stages, seconds_of


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


def test_each_transform_sample_starts_from_the_state_the_stage_before_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Probes stand in for the stages (the real ones run in `make bench`): each appends its name
    to the warehouse file and reports what it found there."""
    warehouse = tmp_path / "data" / "warehouse.duckdb"
    warehouse.parent.mkdir(parents=True)
    warehouse.write_text("")
    seen: list[tuple[str, str]] = []

    def probe(name: str, *_args: object) -> dict:
        seen.append((name, warehouse.read_text()))
        warehouse.write_text(warehouse.read_text() + name + ";")
        return {"seconds": float(len(seen))}

    monkeypatch.setattr("bench.run.run_probe", probe)
    stages = (("extract", None), ("transform", "transform_one_sql"), ("gate", None))

    measured = run_stages(stages, AS_OF, tmp_path, {}, with_lower_bounds=True, samples=3)

    assert seen == [
        ("extract", ""),
        ("transform", "extract;"),
        ("transform_one_sql", "extract;transform;"),
        ("transform", "extract;"),
        ("transform_one_sql", "extract;transform;"),
        ("transform", "extract;"),
        ("transform_one_sql", "extract;transform;"),
        ("gate", "extract;transform;transform_one_sql;"),
    ]
    assert [entry["stage_samples"] for entry in measured] == [[1.0], [2.0, 4.0, 6.0], [8.0]]
    assert measured[1]["bound_samples"] == [3.0, 5.0, 7.0]
    assert not (tmp_path / "saved-state").exists()
