"""Fixing quarantined rows: export them as CSV, correct them, load them again.

``export_quarantined`` writes the original records of rejected rows, one CSV per source file,
named like that file so that the same mapping profile applies when they come back. A file that
feeds several entities (one export, a profile per entity) gets one CSV per entity, each in a
folder named after it, so that its rows come back through that entity's profile.
``resubmit`` loads corrected files through the normal staging and validation and resolves the
original quarantine rows: a fixed row is loaded, a row that is still wrong is quarantined again
with its current reason (that new row is the one left open).
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from flows.sources.inbox import (
    InboxFile,
    SourceFileError,
    StagedFile,
    already_loaded,
    commit_staged,
    file_sha256,
    identify_all,
    parsing_connection,
    stage_file,
)
from flows.sources.mapping import FileFormat, SourceMapping
from flows.warehouse import Connection


def export_name(source_file: str) -> str:
    """``leads__crm.csv`` → ``leads__crm.csv``; ``events__web.jsonl.gz`` → ``events__web.csv``.

    The exported file is plain CSV whatever the original was, but keeps the original's name
    stem so that the original's mapping profile still matches it.
    """
    name = Path(source_file).name
    for suffix in (".gz", ".jsonl", ".ndjson", ".parquet"):
        name = name.removesuffix(suffix)
    return name if name.endswith(".csv") else f"{name}.csv"


def export_quarantined(
    connection: Connection, out_dir: Path, *, reason: str | None = None
) -> dict[Path, int]:
    """Write unresolved extract rejections (optionally of one reason) as CSV files to fix."""
    rows = connection.execute(
        """
        select source_file, entity, record, feeds_several
        from (
            select
                source_file,
                entity,
                record,
                source_line,
                min(entity) over (partition by source_file)
                    <> max(entity) over (partition by source_file) as feeds_several,
                -- A file loaded in several versions rejected the same row each time: export
                -- it once.
                row_number() over (
                    partition by
                        source_file, entity, coalesce(record_key, load_id || ':' || source_line)
                    order by quarantined_at desc
                ) as version_rank
            from ops.quarantine
            where stage = 'extract' and resolved_at is null and (? is null or reason_code = ?)
        ) as unresolved
        where version_rank = 1
        order by source_file, entity, source_line
        """,
        [reason, reason],
    ).fetchall()
    by_target: dict[Path, list[dict[str, object]]] = {}
    for source_file, entity, record, feeds_several in rows:
        folder = out_dir / entity if feeds_several else out_dir
        by_target.setdefault(folder / export_name(source_file), []).append(json.loads(record))
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[Path, int] = {}
    for target, records in by_target.items():
        target.parent.mkdir(exist_ok=True)
        temporary = target.with_name(f".{target.name}.tmp")
        with temporary.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(records[0]))
            writer.writeheader()
            for record in records:
                writer.writerow(
                    {
                        k: json.dumps(v) if isinstance(v, dict | list) else v
                        for k, v in record.items()
                    }
                )
        os.replace(temporary, target)
        written[target] = len(records)
    return written


def resubmission_mapping(path: Path, mappings: list[SourceMapping]) -> SourceMapping:
    """The original file's mapping, reading the exported file's plain UTF-8 CSV.

    When profiles for several entities match the name, the one of the entity the folder is
    named after (where ``export_quarantined`` puts such rows), else the first.
    """
    candidates = identify_all(path, mappings)
    by_entity = {mapping.entity.name: mapping for mapping in candidates}
    mapping = by_entity.get(path.parent.name, candidates[0])
    return replace(mapping, format=FileFormat(type="csv"))


def resubmit(
    connection: Connection,
    files: list[Path],
    mappings: list[SourceMapping],
    *,
    run_id: str,
    as_of: datetime,
) -> list[StagedFile]:
    """Load corrected files (all or nothing) and resolve the quarantine rows they fix."""
    with parsing_connection(connection) as parser:
        staged = []
        for index, path in enumerate(files):
            inbox_file = InboxFile(path, resubmission_mapping(path, mappings), file_sha256(path))
            if already_loaded(connection, inbox_file):
                raise SourceFileError(
                    path, "this exact file was loaded before; nothing to resubmit"
                )
            staged.append(stage_file(connection, parser, inbox_file, as_of, index))
        committed = commit_staged(connection, staged, run_id)
    for result in committed:
        entity = result.file.entity
        unresolved = connection.execute(
            "select distinct source_file from ops.quarantine "
            "where stage = 'extract' and resolved_at is null and entity = ?",
            [entity.name],
        ).fetchall()
        originals = [f for (f,) in unresolved if export_name(f) == result.file.path.name]
        if not originals:
            continue
        connection.execute(
            f"""
            update ops.quarantine set resolved_at = $as_of, resolved_by_load_id = $load_id
            where stage = 'extract' and resolved_at is null and load_id <> $load_id
              and source_file in (select unnest($originals))
              and (
                  record_key in (
                      select {entity.key} from raw.{entity.name} where load_id = $load_id
                  )
                  -- still wrong: the new rejection, with its current reason, supersedes it
                  or record_key in (select record_key from ops.quarantine where load_id = $load_id)
              )
            """,
            {"as_of": as_of, "load_id": result.file.load_id, "originals": originals},
        )
    return committed
