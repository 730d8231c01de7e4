"""Extracts running at once against one PostgreSQL warehouse (several workers): every file is
loaded once, a load another run claimed is skipped, and the API watermark never moves back."""

from __future__ import annotations

import threading
from datetime import datetime
from pathlib import Path

import pytest

from flows.settings import PostgresTarget
from flows.sources.api import advance_watermark, read_watermark
from flows.sources.inbox import FileLoad, SourceFileError, load_file, scan_inbox
from flows.warehouse import connect

AS_OF = datetime(2026, 11, 22)
LEADS_HEADER = "source_lead_id,email,first_name,created_at,updated_at"
WORKERS = 2


def write_inbox(inbox: Path, files: int) -> None:
    """``files`` lead files of three rows each, one of them quarantined (a broken email)."""
    inbox.mkdir()
    for number in range(files):
        rows = [
            f"{number}-1,a{number}@b.com,A,2026-01-01,2026-01-02",
            f"{number}-2,broken@,B,2026-01-01,2026-01-02",
            f"{number}-3,c{number}@b.com,C,2026-01-01,2026-01-02",
        ]
        (inbox / f"leads__crm__{number:02}.csv").write_text("\n".join([LEADS_HEADER, *rows]))


def test_two_extracts_loading_one_inbox_at_once_load_each_file_once(postgres_database, tmp_path):
    inbox = tmp_path / "inbox"
    write_inbox(inbox, files=8)
    scanned = threading.Barrier(WORKERS)
    outcomes: dict[int, list[FileLoad | SourceFileError]] = {}

    def extract(worker: int) -> None:
        connection = connect(postgres_database)
        try:
            new = scan_inbox(connection, inbox).new
            scanned.wait()  # both found every file new: they race for each one
            outcomes[worker] = []
            for index, inbox_file in enumerate(new):
                try:
                    load = load_file(connection, inbox_file, AS_OF, f"run-{worker}", index=index)
                except SourceFileError as error:
                    outcomes[worker].append(error)
                else:
                    outcomes[worker].append(load)
        finally:
            connection.close()

    threads = [threading.Thread(target=extract, args=(worker,)) for worker in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert all(len(outcomes[worker]) == 8 for worker in range(WORKERS))
    # A lost race is "already loaded", not an error: each file loaded by exactly one worker.
    errors = [o for loads in outcomes.values() for o in loads if isinstance(o, SourceFileError)]
    assert errors == []
    loaded_by = [
        sum(not load.skipped for load in loads)
        for loads in zip(*outcomes.values(), strict=True)
        if all(isinstance(load, FileLoad) for load in loads)
    ]
    assert loaded_by == [1] * 8
    warehouse = connect(postgres_database)
    assert warehouse.execute(
        "select count(*), count(distinct file_sha256), sum(rows_loaded) from ops.loads"
    ).fetchone() == (8, 8, 16)
    assert warehouse.execute(
        "select count(*), count(distinct source_lead_id) from raw.leads"
    ).fetchone() == (16, 16)
    assert warehouse.execute(
        "select count(*), count(distinct record_key) from ops.quarantine"
    ).fetchone() == (8, 8)
    assert warehouse.execute("select count(*) from ops.load_errors").fetchone() == (0,)
    warehouse.close()


@pytest.mark.parametrize("claimant_ends", ["commit", "rollback"])
def test_a_load_another_run_is_committing_waits_for_it(postgres_database, tmp_path, claimant_ends):
    inbox = tmp_path / "inbox"
    write_inbox(inbox, files=1)
    claimant, worker = connect(postgres_database), connect(postgres_database)
    (inbox_file,) = scan_inbox(worker, inbox).new
    # Another run's commit of the same load, between its claim (the ledger row) and its end.
    claimant.begin()
    claimant.execute(
        "insert into ops.loads values (?, 'other', 'leads', 'crm', ?, ?, 3, 2, 1, ?, ?)",
        [inbox_file.load_id, str(inbox_file.path), inbox_file.sha256, AS_OF, "leads__crm"],
    )
    loads: list[FileLoad] = []
    loading = threading.Thread(
        target=lambda: loads.append(load_file(worker, inbox_file, AS_OF, "run-2"))
    )
    loading.start()
    loading.join(timeout=2)
    assert loading.is_alive()  # it waits on the claim rather than loading beside it
    getattr(claimant, claimant_ends)()
    loading.join(timeout=30)
    (load,) = loads
    leads = claimant.execute("select count(*) from raw.leads").fetchone()
    if claimant_ends == "commit":
        assert (load.skipped, leads) == (True, (0,))  # the claimant's load, not loaded twice
    else:
        assert (load.skipped, load.rows_loaded, leads) == (False, 2, (2,))
    assert claimant.execute("select count(*) from ops.loads").fetchone() == (1,)
    claimant.close()
    worker.close()


def insert_lead(connection, load_id: str, updated_at: datetime) -> None:
    connection.execute(
        "insert into raw.leads (source_lead_id, is_do_not_email, created_at, updated_at, "
        "load_id, source, source_file, source_line, loaded_at) "
        "values ('1', false, ?, ?, ?, 'crm_api', 'f.jsonl', 1, ?)",
        [updated_at, updated_at, load_id, AS_OF],
    )


def test_the_api_watermark_never_moves_back_when_loads_commit_out_of_order(
    postgres_database: PostgresTarget,
):
    newer, older = connect(postgres_database), connect(postgres_database)
    newer.begin()
    insert_lead(newer, "load_newer", datetime(2026, 11, 15))
    advance_watermark(newer, "crm_api", "leads", "updated_at", "load_newer")
    # The older load advances beside it and commits last: it must not win.
    older.begin()
    insert_lead(older, "load_older", datetime(2026, 11, 10))
    advancing = threading.Thread(
        target=advance_watermark, args=(older, "crm_api", "leads", "updated_at", "load_older")
    )
    advancing.start()
    advancing.join(timeout=2)
    assert advancing.is_alive()  # the watermark row is the newer load's until it commits
    newer.commit()
    advancing.join(timeout=30)
    older.commit()
    assert read_watermark(newer, "crm_api") == datetime(2026, 11, 15)
    newer.close()
    older.close()
