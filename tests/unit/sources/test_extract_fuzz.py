"""Generated hostile files thrown at the extract: every input row is accounted for.

Seeded random generation (reproducible: a failure names its seed and file) of CSV, JSON-lines
and Parquet files with headers full of SQL words, values at the limits of the columns they
land in, several encodings, nesting, ragged rows and empty files. One run of the extract's
loop loads them all: it never aborts, and for every file loaded + quarantined rows, or the
rows of a file that failed as a whole, make up every row written. ``sources check`` predicts
each file's fate exactly.
"""

from __future__ import annotations

import csv
import io
import json
import random
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb
import pytest

from flows.extract import load_inbox
from flows.settings import load_settings
from flows.sources.catalog import ENTITIES, Entity
from flows.sources.check import check_files
from flows.sources.mapping import SHIPPED_PROFILES, load_mappings
from flows.warehouse import open_warehouse

AS_OF = datetime(2026, 11, 22)
FILES_PER_SEED = 50
SQL_WORDS = ["rowid", "ROWID", "select", "order", "group", "from", "where", "table", "null"]
ODD_NAMES = ["record", "record_number", "c0", "_nested_column", "a.b", 'quo"te', "", "ünï", "$.x"]
TEXT = [
    "",
    "Acme",
    "O'Brien",
    'say "hi"',
    "a,b;c",
    "line\nbreak",
    "tab\there",
    "Zoë 🚀 東京",
    "x" * 1001,
    "NULL",
    "\\N",
    "=cmd()",
    "<b>x</b>",
    " padded ",
]
EMAILS = ["a@b.com", "UPPER@X.COM", " pad@x.io ", "", "bad@", "a b@x.com", "x@y"]
INTEGERS = ["0", "7", "2147483647", "2147483648", "-1", "99999999999", "1e400", "12.5"]
INTEGERS += ["NaN", "inf", "", "abc", "9" * 30, "0x10", " 7 "]
TIMESTAMPS = ["2026-01-01", "2026-01-01T10:00:00", "2026-01-01 10:00:00+05:00", "9999-12-31"]
TIMESTAMPS += ["0001-01-01", "1990-01-01", "294247-01-10", "2026-13-01", "", "yesterday"]
BOOLEANS = ["true", "no", "Y", "1", "maybe", ""]


PROFILED_ENCODINGS = ("latin-1", "utf-16")


def write_encoding_profiles(folder: Path) -> None:
    """A profile per (encoding, entity) mapping canonical names to themselves: files named
    ``<encoding>-<entity>-N.csv`` load through it, whatever optional columns they have."""
    folder.mkdir()
    for encoding in PROFILED_ENCODINGS:
        for entity in (ENTITIES["leads"], ENTITIES["events"]):
            columns = ", ".join(f"{c}: {c}" for c in entity.columns)
            (folder / f"fuzz_{encoding}_{entity.name}.yml").write_text(
                f"source: fuzz_{encoding.replace('-', '')}\nentity: {entity.name}\n"
                f"files: ['{encoding}-{entity.name}-*.csv']\nformat: {{encoding: {encoding}}}\n"
                f"columns: {{{columns}}}\n"
            )


@dataclass(frozen=True)
class Generated:
    name: str
    rows: int  # records written: each must be loaded, quarantined or in a failed file


def cell(rng: random.Random, entity: Entity, column: str, number: int) -> str:
    """Mostly a valid value, so rows load too; else one at or beyond a limit."""
    hostile = rng.random() < 0.25
    if column == entity.key:
        return rng.choice(["k0", ""]) if hostile else f"k{number}"
    if column in entity.emails:
        return rng.choice(EMAILS) if hostile else f"lead{number}@example.com"
    if column in entity.integers or column in entity.decimals:
        return rng.choice(INTEGERS) if hostile else str(rng.randint(0, 2_147_483_647))
    if column in entity.timestamps:
        return rng.choice(TIMESTAMPS) if hostile else "2026-01-01 10:00:00"
    if column in entity.booleans:
        return rng.choice(BOOLEANS)
    if column in entity.accepted_values:
        accepted = entity.accepted_values[column]
        return rng.choice(["bogus", ""]) if hostile else rng.choice(accepted)
    return rng.choice(TEXT)


def json_value(rng: random.Random, text: str) -> object:
    """A cell as a JSON lines writer might hold it: mostly text, sometimes typed or nested."""
    roll = rng.random()
    if roll < 0.03:
        return {"value": text}
    if roll < 0.05:
        return [text]
    if roll < 0.08:
        return None
    if roll < 0.1:
        return rng.choice([True, False, 1.5])
    if text.strip().lstrip("-").isdigit() and roll < 0.5:
        return int(text)
    return text


def generate(rng: random.Random, folder: Path, number: int) -> Generated:
    entity = ENTITIES[rng.choice(["leads", "leads", "events"])]
    optional = rng.sample(entity.optional, rng.randint(0, len(entity.optional)))
    extras = rng.sample(SQL_WORDS + ODD_NAMES, rng.randint(0, 3))
    header = [*entity.required, *optional, *extras]
    rng.shuffle(header)
    records = [
        {name: cell(rng, entity, name, rng.randint(1, 99)) for name in header}
        for _ in range(rng.randint(0, 12))
    ]
    kind = rng.choice(["csv", "csv", "jsonl", "parquet", "empty"])
    path = folder / f"{entity.name}__fuzz_{number:03d}.{'csv' if kind == 'empty' else kind}"
    if kind == "empty":
        path.write_bytes(b"")
        return Generated(path.name, 0)
    if kind == "jsonl":
        lines = [json.dumps({k: json_value(rng, v) for k, v in r.items()}) for r in records]
        if rng.random() < 0.2:
            lines.insert(rng.randint(0, len(lines)), rng.choice(["[1, 2]", "7", '"text"', "null"]))
        path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        return Generated(path.name, len(lines))
    if kind == "parquet":
        # Parquet needs names, unique whatever their letter case.
        header = list({name.lower(): name for name in header if name}.values())
        connection = duckdb.connect()
        nested = rng.choice([None, *header]) if rng.random() < 0.3 else None
        connection.execute(
            "create table export ("
            + ", ".join(
                f'"{name.replace(chr(34), chr(34) * 2)}" '
                + ("struct(v varchar)" if name == nested else "varchar")
                for name in header
            )
            + ")"
        )
        for record in records:
            values = [{"v": record[n]} if n == nested else record[n] for n in header]
            connection.execute(
                f"insert into export values ({', '.join('?' * len(header))})", values
            )
        connection.execute(f"copy export to '{path}' (format parquet)")
        connection.close()
        return Generated(path.name, len(records))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for record in records:
        row = [record[name] for name in header]
        if rng.random() < 0.05:  # ragged: a cell too many or too few
            row = [*row, "extra"] if rng.random() < 0.5 else row[:-1]
        writer.writerow(row)
    encoding = rng.choice(["utf-8", "utf-8", "utf-8-sig", "latin-1", "utf-16"])
    if encoding in PROFILED_ENCODINGS and rng.random() < 0.7:
        # Declared in a profile (else the file is not UTF-8 as the convention says: it fails).
        path = path.with_name(f"{encoding}-{entity.name}-{number:03d}.csv")
    path.write_bytes(buffer.getvalue().encode(encoding, errors="replace"))
    return Generated(path.name, len(records))


# One seed in the fast suite; more in the slow one (each is a run of FILES_PER_SEED files).
@pytest.mark.parametrize("seed", [1, *(pytest.param(s, marks=pytest.mark.slow) for s in (2, 3, 4))])
def test_generated_hostile_files_never_abort_and_every_row_is_accounted_for(
    tmp_path, monkeypatch, warehouse_setting, seed
):
    monkeypatch.setenv("LEADFLOW_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LEADFLOW_MAPPINGS_DIR", str(tmp_path / "profiles"))
    write_encoding_profiles(tmp_path / "profiles")
    inbox = tmp_path / "data" / "inbox"
    inbox.mkdir(parents=True)
    rng = random.Random(seed)
    generated = {g.name: g for g in (generate(rng, inbox, n) for n in range(FILES_PER_SEED))}
    mappings = load_mappings([tmp_path / "profiles", SHIPPED_PROFILES])
    predicted = {
        check.path.name: check for check in check_files(inbox, mappings=mappings, as_of=AS_OF)
    }

    result = load_inbox.fn(f"fuzz-{seed}", AS_OF)  # the extract's loop, without Prefect

    with open_warehouse(load_settings().warehouse, read_only=True) as warehouse:
        failed = {
            Path(path).name
            for (path,) in warehouse.execute("select file_path from ops.load_errors").fetchall()
        }
        ledger = {
            Path(path).name: (read, loaded, quarantined)
            for path, read, loaded, quarantined in warehouse.execute(
                "select file_path, rows_read, rows_loaded, rows_quarantined from ops.loads"
            ).fetchall()
        }
        stored = dict.fromkeys(generated, 0)
        for table in ("raw.leads", "raw.events", "ops.quarantine"):
            for path, count in warehouse.execute(
                f"select source_file, count(*) from {table} group by 1"
            ).fetchall():
                stored[Path(path).name] += count
    accounted = 0
    for name, file in generated.items():
        where = f"seed {seed}, {name}"
        if name in failed:
            assert name not in ledger, where
            assert predicted[name].error, where  # check said it would fail
            accounted += file.rows
            continue
        if predicted[name].same_as is not None:  # a copy of a file loaded before it
            assert name not in ledger, where
            continue
        read, loaded, quarantined = ledger[name]
        assert read == file.rows == stored[name] == loaded + quarantined, where
        check = predicted[name]
        assert (check.rows_read, check.rows_loaded, check.reasons != {}) == (
            read,
            loaded,
            quarantined > 0,
        ), where
        accounted += read
    copies = sum(g.rows for n, g in generated.items() if predicted[n].same_as is not None)
    assert accounted + copies == sum(g.rows for g in generated.values())
    assert len(result.file_errors) == len(failed)
    # Not vacuous: most files load, some fail whole, and rows end up on both sides.
    assert len(ledger) > FILES_PER_SEED / 3 and failed
    assert sum(result.rows_loaded.values()) > 0 and result.rows_quarantined > 0
