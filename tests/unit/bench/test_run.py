from pathlib import Path

import pytest

from bench.run import copy_transform_state, main, seconds_of


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
