"""A starting mapping profile for an export, from its header and a sample of its values.

``leadflow sources init FILE`` reads the first rows of a CSV, JSON-lines or Parquet export
and proposes what a data engineer would otherwise type: the format, a canonical target for
each column whose name resembles one, value maps for Yes/No flags and form placeholders
(``Select``), timestamp formats, and, for leads, every other column as a custom attribute.
The result is a YAML profile to review and edit, never loaded unseen: a column is only
*suggested* for a target.
"""

from __future__ import annotations

import csv
import difflib
import gzip
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb

from flows.sources.catalog import ENTITIES, Entity
from flows.sources.mapping import (
    ATTRIBUTE_ENTITIES,
    ENCODINGS,
    attribute_name,
    type_by_suffix,
)

SAMPLE_ROWS = 1000
# Texts forms and CRMs write for "no answer": they become null in every column.
PLACEHOLDERS = ("select", "n/a", "na", "-", "--", "none", "null", "unknown", "not provided")
YES_NO = {"yes": "true", "no": "false", "y": "true", "n": "false", "true": "true", "false": "false"}
# Columns a sales team writes after the outcome: proposed as outcome_only, never attributes.
AFTER_THE_FACT = re.compile(r"tag|status|quality|stage|outcome|disposition")
TIMESTAMP_FORMATS = (
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%dT%H:%M:%SZ",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d",
    "%d/%m/%Y %H:%M",
    "%m/%d/%Y %H:%M",
    "%d/%m/%Y",
    "%m/%d/%Y",
    "%d.%m.%Y %H:%M",
    "%d.%m.%Y",
    "%m/%d/%Y, %I:%M %p",
)
# Export names that mean a canonical column but do not look like its name.
SYNONYMS: dict[str, tuple[str, ...]] = {
    "source_lead_id": ("id", "lead_id", "record_id", "prospect_id", "contact_id", "lead_number"),
    "event_id": ("id", "activity_id", "event_key"),
    "outcome_id": ("id", "outcome_key", "feedback_id"),
    "rep_id": ("id", "owner_id", "user_id", "sales_rep_id"),
    "email": ("email_address", "e_mail", "mail"),
    "created_at": ("create_date", "created", "created_date", "creation_date", "date_created"),
    "updated_at": ("last_modified_date", "modified", "updated", "last_modified", "modified_date"),
    "company": ("company_name", "organization", "organisation", "account_name"),
    "title": ("job_title", "position"),
    "employee_count": ("employees", "number_of_employees", "company_size", "headcount"),
    "phone": ("phone_number", "mobile", "mobile_phone", "telephone"),
    "lead_source": ("source", "lead_origin", "original_source", "channel"),
    "first_campaign": ("campaign", "first_touch_campaign", "utm_campaign"),
    "is_do_not_email": ("do_not_email", "email_opt_out", "unsubscribed", "opted_out_of_email"),
    "first_name": ("firstname", "given_name"),
    "last_name": ("lastname", "surname", "family_name"),
    "occurred_at": ("timestamp", "date", "event_date", "activity_date", "time"),
    "event_type": ("activity", "event", "last_activity", "activity_type"),
    "outcome": ("status", "lead_status", "stage"),
    "reason": ("reason", "lost_reason", "tags"),
}
SIMILARITY_CUTOFF = 0.8


class InitError(Exception):
    """An export a profile cannot be started from; the message names the file and the fix."""


@dataclass(frozen=True)
class ColumnProfile:
    """What the sample shows of one export column."""

    name: str
    kind: str  # integer | number | timestamp | yes_no | text | empty
    examples: tuple[str, ...] = ()
    placeholders: tuple[str, ...] = ()  # as written in the export (``Select``)
    yes_no: tuple[str, ...] = ()  # the Yes/No words as written
    timestamp_format: str | None = None
    is_unique: bool = False


@dataclass(frozen=True)
class ProfileDraft:
    source: str
    entity: Entity
    files: str
    file_type: str
    delimiter: str = ","
    encoding: str = "utf-8"
    columns: dict[str, ColumnProfile] = field(default_factory=dict)  # canonical -> column
    attributes: dict[str, ColumnProfile] = field(default_factory=dict)  # name -> column
    outcome_only: tuple[ColumnProfile, ...] = ()  # leads: written after the fact
    unmapped: tuple[ColumnProfile, ...] = ()  # not leads: columns left out
    rows_sampled: int = 0


def read_sample(
    path: Path, rows: int = SAMPLE_ROWS
) -> tuple[list[str], list[list[str | None]], str, str]:
    """The header, up to ``rows`` rows as text, the CSV delimiter and the encoding."""
    kind = type_by_suffix(path) or "csv"
    if kind == "csv":
        return _read_csv_sample(path, rows)
    reader = "read_ndjson_auto" if kind == "jsonl" else "read_parquet"
    connection = duckdb.connect()
    try:
        relation = connection.sql(
            f"select * from {reader}($path) limit {rows}", params={"path": str(path)}
        )
        header = list(relation.columns)
        values = [
            [None if value is None else str(value) for value in row] for row in relation.fetchall()
        ]
    except duckdb.Error as error:
        raise InitError(f"{path}: not a readable {kind} file ({error})") from None
    finally:
        connection.close()
    return header, values, ",", "utf-8"


def _read_csv_sample(path: Path, rows: int) -> tuple[list[str], list[list[str | None]], str, str]:
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    for encoding in ENCODINGS:
        python_encoding = "utf-8-sig" if encoding == "utf-8" else encoding
        try:
            with opener(path, "rt", encoding=python_encoding, newline="") as handle:
                head = handle.read(64 * 1024)
                handle.seek(0)
                try:
                    delimiter = csv.Sniffer().sniff(head, delimiters=",;\t|").delimiter
                except csv.Error:
                    delimiter = ","
                reader = csv.reader(handle, delimiter=delimiter)
                header = [cell.strip() for cell in next(reader, [])]
                sample = [row for _, row in zip(range(rows), reader, strict=False)]
        except UnicodeError:
            continue
        except OSError as error:
            raise InitError(f"{path}: cannot read the file ({error.strerror or error})") from None
        if not any(header):
            raise InitError(f"{path}: the file is empty; a profile starts from its header row")
        return header, [[cell or None for cell in row] for row in sample], delimiter, encoding
    raise InitError(f"{path}: the file is not UTF-8, Latin-1 or UTF-16 text; export it as UTF-8")


def profile_column(name: str, values: Iterable[str | None]) -> ColumnProfile:
    """The kind of a column's sampled values, with its placeholders and Yes/No words."""
    written = [value.strip() for value in values if value is not None and value.strip()]
    placeholders = tuple(sorted({v for v in written if v.lower() in PLACEHOLDERS}))
    answers = [v for v in written if v not in placeholders]
    examples = tuple(dict.fromkeys(answers))[:3]
    unique = bool(answers) and len(set(answers)) == len(answers)
    if not answers:
        return ColumnProfile(name, "empty", placeholders=placeholders)
    words = {v.lower() for v in answers}
    if words <= set(YES_NO):
        yes_no = tuple(sorted(set(answers)))
        return ColumnProfile(name, "yes_no", examples, placeholders, yes_no, is_unique=unique)
    if all(re.fullmatch(r"[-+]?\d+", v) for v in answers):
        return ColumnProfile(name, "integer", examples, placeholders, is_unique=unique)
    if all(re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)", v) for v in answers):
        return ColumnProfile(name, "number", examples, placeholders, is_unique=unique)
    for timestamp_format in TIMESTAMP_FORMATS:
        if all(_parses(v, timestamp_format) for v in answers):
            return ColumnProfile(
                name, "timestamp", examples, placeholders, timestamp_format=timestamp_format
            )
    return ColumnProfile(name, "text", examples, placeholders, is_unique=unique)


def _parses(value: str, timestamp_format: str) -> bool:
    try:
        datetime.strptime(value, timestamp_format)
    except ValueError:
        return False
    return True


def suggest_targets(entity: Entity, columns: list[ColumnProfile]) -> dict[str, ColumnProfile]:
    """Canonical column -> the export column whose name is most like it (or a known synonym);
    each canonical column and each export column used once, the closest pairs first."""
    candidates = []
    for column in columns:
        name = attribute_name(column.name)
        for target in entity.columns:
            names = (target, *SYNONYMS.get(target, ()))
            score = max(difflib.SequenceMatcher(None, name, known).ratio() for known in names)
            if score >= SIMILARITY_CUTOFF and _fits(target, entity, column):
                candidates.append((score, target, column))
    chosen: dict[str, ColumnProfile] = {}
    for _, target, column in sorted(candidates, key=lambda c: -c[0]):
        if target not in chosen and column not in chosen.values():
            chosen[target] = column
    return chosen


def _fits(target: str, entity: Entity, column: ColumnProfile) -> bool:
    """Whether the sampled values can feed the canonical column at all."""
    if column.kind == "empty":
        return target != entity.key
    if target == entity.key:
        return column.is_unique
    if target in entity.timestamps:
        return column.kind == "timestamp"
    if target in entity.integers:
        return column.kind == "integer"
    if target in entity.booleans:
        return column.kind == "yes_no"
    return column.kind != "timestamp"


def draft_profile(
    path: Path, entity_name: str = "leads", source: str | None = None
) -> ProfileDraft:
    if entity_name not in ENTITIES:
        raise InitError(f"--entity {entity_name}: must be one of {', '.join(ENTITIES)}")
    entity = ENTITIES[entity_name]
    header, rows, delimiter, encoding = read_sample(path)
    columns = [
        profile_column(name, (row[n] if n < len(row) else None for row in rows))
        for n, name in enumerate(header)
    ]
    targets = suggest_targets(entity, columns)
    rest = [column for column in columns if column not in targets.values()]
    attributes: dict[str, ColumnProfile] = {}
    outcome_only: list[ColumnProfile] = []
    if entity.name in ATTRIBUTE_ENTITIES:
        for column in rest:
            name = attribute_name(column.name)
            if AFTER_THE_FACT.search(name):
                outcome_only.append(column)
            elif name and name not in entity.columns and name not in attributes:
                attributes[name] = column
    kept = {*targets.values(), *attributes.values(), *outcome_only}
    stem = path.name.split(".")[0]
    dated = re.compile(r"\d+(?:[-_.]\d+)*")  # export dates and counters vary per file
    return ProfileDraft(
        source=source or attribute_name(dated.sub("", stem)) or "export",
        entity=entity,
        files=dated.sub("*", stem) + path.name[len(stem) :],
        file_type=type_by_suffix(path) or "csv",
        delimiter=delimiter,
        encoding=encoding,
        columns=targets,
        attributes=attributes,
        outcome_only=tuple(outcome_only),
        unmapped=tuple(column for column in columns if column not in kept),
        rows_sampled=len(rows),
    )


def _yaml(text: str) -> str:
    """A YAML scalar for any text: JSON strings are YAML."""
    return json.dumps(text, ensure_ascii=False)


def _described(column: ColumnProfile) -> str:
    examples = ", ".join(column.examples) or "no values in the sample"
    return f"{column.kind}; e.g. {examples}"


def render_profile(draft: ProfileDraft, path: Path) -> str:
    """The draft as a commented YAML profile."""
    entity = draft.entity
    lines = [
        f"# A starting profile for {path.name}, written by `leadflow sources init` from its",
        f"# header and {draft.rows_sampled} sampled rows. Review every line: targets are",
        "# suggestions by column name. Reference: docs/sources.md.",
        f"source: {draft.source}",
        f"entity: {entity.name}",
        f"files: [{_yaml(draft.files)}]",
    ]
    if draft.file_type == "csv":
        lines += [
            "format:",
            f"  delimiter: {_yaml(draft.delimiter)}",
            f"  encoding: {draft.encoding}",
        ]
    if not all(t in draft.columns for t in entity.timestamps):
        lines.append(
            "default_timestamp: file_mtime   # timestamps the export lacks: its export time"
        )
    lines.append("columns:")
    for target in entity.columns:
        if target in draft.columns:
            column = draft.columns[target]
            lines.append(f"  {target}: {_yaml(column.name)}   # {_described(column)}")
        elif target in entity.required and target not in entity.timestamps:
            lines.append(f"  # {target}: ???   # required: no column looked like it; map one")
    formats = {t: c.timestamp_format for t, c in draft.columns.items() if c.timestamp_format}
    if formats:
        lines.append("timestamp_formats:")
        lines += [f"  {target}: {_yaml(fmt)}" for target, fmt in formats.items()]
    value_maps = _value_maps(draft)
    if value_maps:
        lines.append("values:")
        for key, mapping in value_maps.items():
            pairs = ", ".join(
                f"{_yaml(raw)}: {'~' if to is None else _yaml(to)}" for raw, to in mapping.items()
            )
            lines.append(f"  {_yaml(key)}: {{{pairs}}}")
    if draft.attributes:
        lines.append("attributes:   # custom attributes for fit rules (attribute: export column)")
        lines += [
            f"  {name}: {_yaml(column.name)}   # {_described(column)}"
            for name, column in draft.attributes.items()
        ]
    if draft.outcome_only:
        names = ", ".join(_yaml(column.name) for column in draft.outcome_only)
        lines.append(f"outcome_only: [{names}]   # written by sales after the fact: never scored")
    for column in draft.unmapped:
        lines.append(f"# not mapped: {column.name} ({_described(column)})")
    return "\n".join(lines) + "\n"


def _value_maps(draft: ProfileDraft) -> dict[str, dict[str, str | None]]:
    """Placeholders to null for every column; Yes/No words to true/false per column."""
    placeholders = sorted(
        {p for c in [*draft.columns.values(), *draft.attributes.values()] for p in c.placeholders}
    )
    maps: dict[str, dict[str, str | None]] = {}
    if placeholders:
        maps["*"] = dict.fromkeys(placeholders)
    named = [*draft.columns.items(), *draft.attributes.items()]
    for key, column in named:
        if column.kind == "yes_no":
            maps[key] = {word: YES_NO[word.lower()] for word in column.yes_no}
    return maps


def write_profile(draft: ProfileDraft, export: Path, output: Path, *, force: bool = False) -> Path:
    if output.exists() and not force:
        raise InitError(f"{output} exists; give another --output or add --force to replace it")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(render_profile(draft, export), encoding="utf-8")
    return output
