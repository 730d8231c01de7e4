"""Column-mapping profiles: how a source's export becomes LeadFlow's canonical rows.

A profile is a YAML file a data engineer writes without Python (reference: docs/sources.md).
It names the source system and entity, which files it applies to, how the file is written
(delimiter, quote, encoding), which export column feeds each canonical column, value maps
(placeholders such as ``Select`` to null, ``Yes``/``No`` to booleans), timestamp formats and
constant fields, and for a leads profile the link to a lead's record in the source's CRM.
Files without a profile follow the naming convention
``<entity>__<source>.csv`` with canonical column names.

A profile turns into one SQL projection over the parsed file, so mapping stays set-based.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from flows.crm_links import checked_crm_url_template
from flows.sources.api import ApiSource
from flows.sources.catalog import ENTITIES, Entity
from flows.sources.validation import NESTED_COLUMN

SHIPPED_PROFILES = Path(__file__).parent / "profiles"
ENCODINGS = ("utf-8", "latin-1", "utf-16")
ALL_COLUMNS = "*"
FILE_MTIME = "file_mtime"  # default_timestamp: the file's modification time, i.e. its export
# Export columns without a canonical target are kept per lead, as a JSON object in this column
# of raw.leads, for fit rules to read (docs/sources.md, "Custom attributes").
ATTRIBUTES_COLUMN = "attributes"
ATTRIBUTE_ENTITIES = ("leads",)
CRM_LINK_ENTITY = "leads"  # the entity whose profiles may declare crm_url_template


class MappingError(Exception):
    """A profile that cannot be used; the message names the file, the key and the fix."""


def sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def quoted_name(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


FILE_TYPES = ("csv", "jsonl", "parquet")
SUFFIX_TYPES = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}


def type_by_suffix(path: Path) -> str | None:
    """csv, jsonl or parquet from the file name (``.gz`` looked through); None if unknown."""
    name = path.name.lower().removesuffix(".gz")
    return next((kind for suffix, kind in SUFFIX_TYPES.items() if name.endswith(suffix)), None)


@dataclass(frozen=True)
class ParsedColumn:
    """A header column as staged: its name in the parsed table and how its values are held.

    Parsed tables name their columns by position (``c0``, ``c1``, …), so no header name, not
    even ``rowid`` or ``select``, can collide with SQL.
    """

    sql: str
    kind: str = "text"  # text | json (a JSON value per row) | nested (a Parquet struct, list, map)


def attribute_name(column: str) -> str:
    """The attribute an export column is kept as: its name in lower snake case
    (``Total Time Spent on Website`` -> ``total_time_spent_on_website``)."""
    return re.sub(r"[^a-z0-9]+", "_", column.lower()).strip("_")


def json_path(keys: Iterable[str]) -> str:
    """A JSONPath naming each key literally (``$."a.b"."c"``), whatever characters it holds."""
    return "$" + "".join('."' + key.replace("\\", "\\\\").replace('"', '\\"') + '"' for key in keys)


def reference(column: str, parsed: Mapping[str, ParsedColumn]) -> ParsedColumn | None:
    """An export column as SQL: a header name, or a dotted path into a nested JSON or Parquet
    field (``properties.email``); None when the file has no such column."""
    if column in parsed:
        return parsed[column]
    first, _, rest = column.partition(".")
    top = parsed.get(first) if rest else None
    if top is None or top.kind == "text":
        return None
    if top.kind == "json":
        return ParsedColumn(
            f"json_extract({top.sql}, {sql_text(json_path(rest.split('.')))})", "json"
        )
    return ParsedColumn(".".join([top.sql, *(quoted_name(part) for part in rest.split("."))]))


def text_and_nesting(column: ParsedColumn) -> tuple[str, str | None]:
    """SQL for a column's value as text, and SQL that is true where it holds an object or list
    (None: it never can).

    A JSON string keeps its value (no quotes); an object or list has no text: the row is
    quarantined (``nested_value``) rather than loading the object's JSON as a name.
    """
    if column.kind == "json":
        nested = f"json_type({column.sql}) in ('OBJECT', 'ARRAY')"
        return f"case when {nested} then null else {column.sql} ->> '$' end", nested
    if column.kind == "nested":
        return "null::varchar", f"{column.sql} is not null"
    return f"cast({column.sql} as varchar)", None


@dataclass(frozen=True)
class FileFormat:
    type: str | None = None  # csv | jsonl | parquet; None: by the file's suffix
    delimiter: str = ","  # the CSV options below apply to csv only
    quote: str = '"'
    encoding: str = "utf-8"

    def type_of(self, path: Path) -> str:
        return self.type or type_by_suffix(path) or "csv"

    @property
    def python_encoding(self) -> str:
        # A byte-order mark is not part of the first column's name.
        return "utf-8-sig" if self.encoding == "utf-8" else self.encoding


@dataclass(frozen=True)
class SourceMapping:
    name: str
    source: str
    entity: Entity
    files: tuple[str, ...] = ()
    format: FileFormat = FileFormat()
    columns: Mapping[str, str] = field(default_factory=dict)  # canonical -> export column
    values: Mapping[str, Mapping[str, str | None]] = field(default_factory=dict)
    timestamp_formats: Mapping[str, str] = field(default_factory=dict)
    constants: Mapping[str, str] = field(default_factory=dict)
    required: tuple[str, ...] = ()  # canonical columns whose export column must be present
    default_timestamp: str | None = None  # FILE_MTIME or a timestamp, for absent timestamps
    attributes: Mapping[str, str] = field(default_factory=dict)  # attribute -> export column
    all_attributes: bool = False  # every export column no canonical column takes, too
    outcome_only: tuple[str, ...] = ()  # export columns never kept as scoring input
    api: ApiSource | None = None
    crm_url_template: str | None = None  # leads: the link to a record (flows/crm_links.py)
    path: Path | None = None

    @property
    def keeps_attributes(self) -> bool:
        """Whether rows of this mapping carry the ``attributes`` column (leads do)."""
        return self.entity.name in ATTRIBUTE_ENTITIES

    def attribute_columns(self, parsed: Mapping[str, ParsedColumn]) -> dict[str, str]:
        """Attribute -> the export column that feeds it, for the columns this file has.

        With ``attributes: "*"`` every header column that feeds no canonical column and is
        not outcome-only is kept under its snake-case name (the first of two columns with one
        name wins; a name that is a canonical column is skipped: the rule syntax would not
        tell them apart)."""
        kept = {
            name: column
            for name, column in self.attributes.items()
            if reference(column, parsed) is not None
        }
        if self.all_attributes:
            taken = {*self.source_columns(parsed).values(), *self.outcome_only, *kept.values()}
            for column in parsed:
                name = attribute_name(column)
                if column in taken or not name or name in self.entity.columns:
                    continue
                kept.setdefault(name, column)
        return kept

    @classmethod
    def by_convention(cls, entity: Entity, source: str) -> SourceMapping:
        """The mapping of a file named ``<entity>__<source>.csv``: canonical column names."""
        return cls(name=f"{entity.name}__{source}", source=source, entity=entity)

    @property
    def watermark_column(self) -> str | None:
        """The canonical timestamp column fed by the API's ``updated_at_field``."""
        if self.api is None:
            return None
        return next(
            (
                c
                for c, name in self.columns.items()
                if name == self.api.updated_at_field and c in self.entity.timestamps
            ),
            None,
        )

    def matches(self, path: Path) -> bool:
        return any(fnmatch.fnmatch(path.name, pattern) for pattern in self.files)

    def source_columns(self, header: Iterable[str]) -> dict[str, str]:
        """Canonical column -> the header column that feeds it."""
        if self.path is None:  # by convention: canonical names, in any letter case
            by_name = {name.strip().lower(): name for name in header}
            return {c: by_name[c] for c in self.entity.columns if c in by_name}
        return dict(self.columns)

    def needed(self, column: str) -> bool:
        """Whether a file cannot load without this canonical column's export column."""
        if column == self.entity.key or column in self.required:
            return True
        fallback = column in self.constants or (
            column in self.entity.timestamps and self.default_timestamp is not None
        )
        return column in self.entity.required and not fallback

    def missing_columns(self, parsed: Mapping[str, ParsedColumn]) -> list[str]:
        """Export columns the file lacks that it cannot load without.

        A profile needs the key, the columns it marks ``required`` and required columns with
        no fallback; of the contact keys, one. Other absent columns load as null.
        """
        sources = self.source_columns(parsed)
        if self.path is None:
            return [c for c in self.entity.required if c not in sources and c not in self.constants]
        absent = {c for c, name in sources.items() if reference(name, parsed) is None}
        missing = {c for c in absent if self.needed(c) and c not in self.entity.contact_keys}
        contacts = [c for c in self.entity.contact_keys if c in sources]
        if contacts and all(c in absent for c in contacts):
            missing.update(contacts)
        return sorted(sources[c] for c in missing)

    def absent_columns(self, parsed: Mapping[str, ParsedColumn]) -> list[str]:
        """Mapped export columns the file lacks (loaded as null, or as their fallback)."""
        return sorted(
            name for name in self.source_columns(parsed).values() if reference(name, parsed) is None
        )

    def timestamp_default(self, path: Path) -> datetime | None:
        """The value for timestamp columns a file lacks: its modification time or a fixed one."""
        if self.default_timestamp is None:
            return None
        if self.default_timestamp == FILE_MTIME:
            return datetime.fromtimestamp(path.stat().st_mtime, UTC).replace(tzinfo=None)
        return datetime.fromisoformat(self.default_timestamp)

    def projection_sql(
        self, parsed: Mapping[str, ParsedColumn], default_timestamp: datetime | None = None
    ) -> str:
        """A select list giving every canonical column of the entity as text, and
        ``_nested_column``: the first canonical column fed an object or list (else null)."""
        sources = self.source_columns(parsed)
        expressions, nested = [], []
        for column in self.entity.columns:
            source = reference(sources[column], parsed) if column in sources else None
            if column in self.constants:
                expression = sql_text(self.constants[column])
            elif source is not None:
                text, is_nested = text_and_nesting(source)
                expression = self._mapped(column, text)
                if is_nested is not None:
                    nested.append(f"when {is_nested} then {sql_text(column)}")
            elif column in self.entity.timestamps and default_timestamp is not None:
                expression = sql_text(f"{default_timestamp:%Y-%m-%d %H:%M:%S}")
            else:
                expression = "null::varchar"
            expressions.append(f"{expression} as {column}")
        nesting = f"case {' '.join(nested)} end" if nested else "null::varchar"
        expressions.append(f"{nesting} as {NESTED_COLUMN}")
        if self.keeps_attributes:
            expressions.append(f"{self.attributes_sql(parsed)} as {ATTRIBUTES_COLUMN}")
        return ", ".join(expressions)

    def attributes_sql(self, parsed: Mapping[str, ParsedColumn]) -> str:
        """A JSON object of the row's attributes as text (blank or an object/list: null),
        after the ``"*"`` value map and the attribute's own; null when none are kept."""
        pairs = []
        for name, column in self.attribute_columns(parsed).items():
            # attribute_columns keeps only the columns this file has: never the "null" here.
            text, _ = text_and_nesting(reference(column, parsed) or ParsedColumn("null"))
            pairs.append(f"{sql_text(name)}, nullif(trim({self._mapped(name, text)}), '')")
        return f"json_object({', '.join(pairs)})" if pairs else "null::json"

    def _mapped(self, column: str, expression: str) -> str:
        value_map = {**self.values.get(ALL_COLUMNS, {}), **self.values.get(column, {})}
        if value_map:
            cases = " ".join(
                f"when {sql_text(raw)} then {'null' if to is None else sql_text(to)}"
                for raw, to in value_map.items()
            )
            expression = f"case trim({expression}) {cases} else {expression} end"
        if column in self.timestamp_formats:
            # An unparseable value is kept as written, so validation quarantines it with the
            # value in the message instead of silently loading a null.
            parsed = f"try_strptime(trim({expression}), {sql_text(self.timestamp_formats[column])})"
            expression = f"coalesce(strftime({parsed}, '%Y-%m-%d %H:%M:%S'), {expression})"
        return expression


class _FormatModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: str | None = None
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    quote: str = Field(default='"', min_length=1, max_length=1)
    encoding: str = "utf-8"

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str | None) -> str | None:
        if value is not None and value not in FILE_TYPES:
            raise ValueError(f"must be one of {', '.join(FILE_TYPES)}")
        return value

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        normalised = value.lower().replace("_", "-")
        normalised = {"utf8": "utf-8", "latin1": "latin-1", "iso-8859-1": "latin-1"}.get(
            normalised, normalised
        )
        if normalised not in ENCODINGS:
            raise ValueError(f"must be one of {', '.join(ENCODINGS)}")
        return normalised


class _ApiModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(pattern=r"^https?://")
    token_env: str | None = None
    records_field: str = "results"
    cursor_field: str | None = None
    cursor_param: str = "after"
    page_param: str = "page"
    page_size_param: str | None = "limit"
    page_size: int = Field(default=100, ge=1, le=10_000)
    updated_since_param: str | None = "updated_since"
    updated_at_field: str = "updated_at"
    max_pages: int = Field(default=10_000, ge=1)


class _ProfileModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source: str = Field(pattern=r"^[a-z0-9_]+$")
    entity: str
    files: list[str] = []
    format: _FormatModel = _FormatModel()
    columns: dict[str, str] = {}
    values: dict[str, dict[str, str | None]] = {}
    timestamp_formats: dict[str, str] = {}
    constants: dict[str, str] = {}
    required: list[str] = []
    default_timestamp: str | None = None
    attributes: str | list[str] | dict[str, str] = []
    outcome_only: list[str] = []
    api: _ApiModel | None = None
    crm_url_template: str | None = None

    @model_validator(mode="after")
    def _names_files(self) -> _ProfileModel:
        if not self.files and self.api is None:
            raise ValueError(
                "key `files` must list the file-name patterns the profile applies to "
                "(a profile with an `api` section may leave it empty)"
            )
        return self

    @field_validator("default_timestamp")
    @classmethod
    def _timestamp_or_file_mtime(cls, value: str | None) -> str | None:
        if value is not None and value != FILE_MTIME:
            try:
                datetime.fromisoformat(value)
            except ValueError:
                raise ValueError(
                    f"must be {FILE_MTIME} (the file's export time) or a timestamp such as "
                    "2026-10-01 00:00:00"
                ) from None
        return value

    @field_validator("crm_url_template")
    @classmethod
    def _crm_link_names_the_record(cls, value: str | None) -> str | None:
        return None if value is None else checked_crm_url_template(value)

    @field_validator("attributes", mode="before")
    @classmethod
    def _attribute_columns(cls, value: Any) -> Any:
        listed = isinstance(value, list) and all(isinstance(c, str) for c in value)
        named = isinstance(value, dict) and all(isinstance(c, str) for c in value.values())
        if value != ALL_COLUMNS and not listed and not named:
            raise ValueError(
                '"*" (every export column no canonical column takes), a list of export '
                "columns, or a map of attribute name to export column"
            )
        return value

    @field_validator("entity")
    @classmethod
    def _known_entity(cls, value: str) -> str:
        if value not in ENTITIES:
            raise ValueError(f"must be one of {', '.join(ENTITIES)}")
        return value


class _ProfileLoader(yaml.SafeLoader):
    """YAML without implicit booleans: in a value map, ``Yes: true`` means the text "Yes"
    becomes "true", where plain YAML would read both sides as booleans."""


_ProfileLoader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _yaml_values(raw: Any) -> Any:
    """Value maps compare text: numbers written in YAML (``1: true``) become text too."""
    if isinstance(raw, dict):
        return {str(key): _yaml_values(value) for key, value in raw.items()}
    return None if raw is None else str(raw)


def load_mapping(path: Path) -> SourceMapping:
    try:
        raw = yaml.load(
            path.read_text(encoding="utf-8"), Loader=_ProfileLoader
        )  # safe: a SafeLoader
    except OSError as error:
        raise MappingError(f"{path}: cannot read the profile ({error.strerror})") from None
    except yaml.YAMLError as error:
        raise MappingError(f"{path}: not valid YAML ({error}); check the indentation") from None
    if not isinstance(raw, dict):
        raise MappingError(f"{path}: a profile is a YAML mapping (see docs/sources.md)")
    if isinstance(raw.get("values"), dict):
        raw["values"] = {key: _yaml_values(value) for key, value in raw["values"].items()}
    try:
        model = _ProfileModel.model_validate(raw)
    except ValidationError as error:
        problems = "; ".join(
            f"key `{'.'.join(str(p) for p in issue['loc'])}`: {issue['msg']}"
            for issue in error.errors()
        )
        raise MappingError(f"{path}: {problems} (reference: docs/sources.md)") from None
    entity = ENTITIES[model.entity]
    attributes = _attributes(path, model, entity)
    named = {
        *model.columns,
        *model.constants,
        *model.timestamp_formats,
        # Under `attributes: "*"` the attribute names are known from a file's header only.
        *(
            name
            for name in model.values
            if name not in attributes and model.attributes != ALL_COLUMNS
        ),
        *model.required,
    }
    unknown = sorted(named - {ALL_COLUMNS} - set(entity.columns))
    if unknown:
        raise MappingError(
            f"{path}: {', '.join(unknown)} are not columns of {entity.name}; "
            f"canonical columns are {', '.join(entity.columns)}"
        )
    unmapped = [
        c
        for c in entity.required
        if c not in model.columns
        and c not in model.constants
        and not (c in entity.timestamps and model.default_timestamp)
    ]
    if unmapped:
        raise MappingError(
            f"{path}: key `columns` must map the required column(s) {', '.join(unmapped)} "
            f"of {entity.name} to an export column (or set them under `constants`"
            + (", or set `default_timestamp`" if set(unmapped) & set(entity.timestamps) else "")
            + ")"
        )
    unrequirable = sorted(set(model.required) - set(model.columns))
    if unrequirable:
        raise MappingError(
            f"{path}: key `required` lists {', '.join(unrequirable)}, which `columns` does not "
            "map to an export column"
        )
    if model.crm_url_template is not None and entity.name != CRM_LINK_ENTITY:
        raise MappingError(
            f"{path}: key `crm_url_template` links a source's leads, so it belongs in the "
            f"source's {CRM_LINK_ENTITY} profile, not in this {entity.name} profile; move it there"
        )
    watermark_columns = [
        c for c, name in model.columns.items() if model.api and name == model.api.updated_at_field
    ]
    if model.api and not set(watermark_columns) & set(entity.timestamps):
        raise MappingError(
            f"{path}: key `api.updated_at_field` ({model.api.updated_at_field}) must be the "
            f"export column of a timestamp column of {entity.name} in `columns` "
            f"({', '.join(entity.timestamps)}): the watermark advances over loaded rows"
        )
    api = (
        ApiSource(name=model.source, entity=entity.name, **model.api.model_dump())
        if model.api
        else None
    )
    # Fetched pages land as <entity>__<source>__api-<time>.jsonl: this profile maps them.
    landing_files = (f"{entity.name}__{model.source}__api-*.jsonl",) if api else ()
    return SourceMapping(
        name=path.stem,
        source=model.source,
        entity=entity,
        files=(*model.files, *landing_files),
        format=FileFormat(
            model.format.type, model.format.delimiter, model.format.quote, model.format.encoding
        ),
        columns=model.columns,
        values=model.values,
        timestamp_formats=model.timestamp_formats,
        constants=model.constants,
        required=tuple(model.required),
        default_timestamp=model.default_timestamp,
        attributes=attributes,
        all_attributes=model.attributes == ALL_COLUMNS,
        outcome_only=tuple(model.outcome_only),
        api=api,
        crm_url_template=model.crm_url_template,
        path=path,
    )


def _attributes(path: Path, model: _ProfileModel, entity: Entity) -> dict[str, str]:
    """The profile's named attributes (attribute -> export column), checked: kept for leads
    only, named apart from the canonical columns, never an outcome-only column."""
    if isinstance(model.attributes, list):
        named = {attribute_name(column): column for column in model.attributes}
    elif isinstance(model.attributes, dict):
        named = dict(model.attributes)
    else:  # "*": named from each file's header
        named = {}
    if (model.attributes or model.outcome_only) and entity.name not in ATTRIBUTE_ENTITIES:
        raise MappingError(
            f"{path}: keys `attributes` and `outcome_only` apply to "
            f"{', '.join(ATTRIBUTE_ENTITIES)} only, not {entity.name}; remove them"
        )
    clashing = sorted(name for name in named if name in entity.columns or not name)
    if clashing:
        raise MappingError(
            f"{path}: key `attributes` names {', '.join(repr(n) for n in clashing)}, which "
            f"is a canonical column of {entity.name} (or empty); map it under `columns`, or "
            "name the attribute otherwise (`attributes: {my_name: Export Column}`)"
        )
    scored = sorted({*named.values(), *model.columns.values()} & set(model.outcome_only))
    if scored:
        raise MappingError(
            f"{path}: {', '.join(scored)} is under `outcome_only` and also mapped under "
            "`columns` or `attributes`; a column sales writes after the outcome must not feed "
            "the score: remove it there"
        )
    return named


def load_mappings(folders: Iterable[Path]) -> list[SourceMapping]:
    """Every profile in the folders, in name order (per entity, the first whose files match
    wins). Two profiles linking one source to different CRM records fail here, before a
    run loads anything."""
    mappings = [
        load_mapping(path)
        for folder in folders
        if folder.is_dir()
        for path in sorted(folder.glob("*.yml"))
    ]
    crm_url_templates(mappings)
    return mappings


def crm_url_templates(mappings: Iterable[SourceMapping]) -> dict[str, str]:
    """Source -> the CRM link template its leads profile declares (sources without: none).

    Raises ``MappingError`` naming both files when two profiles of one source declare
    different templates (say a copy of a shipped profile in LEADFLOW_MAPPINGS_DIR).
    """
    declared: dict[str, tuple[str, Path | None]] = {}
    for mapping in mappings:
        if mapping.crm_url_template is None:
            continue
        template, path = declared.setdefault(
            mapping.source, (mapping.crm_url_template, mapping.path)
        )
        if template != mapping.crm_url_template:
            raise MappingError(
                f"{mapping.path}: key `crm_url_template` links source {mapping.source} "
                f"differently from {path}; a source's leads link to one CRM: remove the key "
                "from one of the two profiles or give both the same template"
            )
    return {source: template for source, (template, _) in declared.items()}


def find_mapping(name_or_path: str, folders: Iterable[Path]) -> SourceMapping:
    """A profile by its path, or by its name (the file name without ``.yml``) among the
    profiles in ``folders``."""
    path = Path(name_or_path)
    if path.is_file():
        return load_mapping(path)
    profiles = {
        path.stem: path
        for folder in folders
        if folder.is_dir()
        for path in sorted(folder.glob("*.yml"))
    }
    if name_or_path in profiles:
        return load_mapping(profiles[name_or_path])
    raise MappingError(
        f"{name_or_path}: no such profile file, nor a profile of that name; give a path to a "
        f"profile or one of: {', '.join(sorted(profiles)) or '(no profiles found)'}"
    )
