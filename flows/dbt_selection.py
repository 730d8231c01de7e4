"""Which part of the dbt project a run rebuilds.

A run rebuilds what can have changed since the last successful build, and leaves the rest as
that build left it:
- what reads a raw table that got new rows (dbt's ``source_status:fresher+``);
- what reads a model, seed or macro whose definition changed (``state:modified+``);
- what reads LeadFlow's own operational tables (``source:ops+``), which the hand-off, the
  nurture flow and the transform itself write without a load time to compare;
- what reads the run clock, and everything downstream of it: scores decay and stages move as
  time passes even when no data arrives.
Everything is rebuilt when there is no earlier build to compare with, when dbt_project.yml or
profiles.yml changed (dbt does not see a changed var as a changed model), or dbt's version.
Event-grain tests then read only the events loaded since the earlier build (they read ten
million rows otherwise; macros/tested_loads.sql says why that is enough), tests of the
per-lead models a run writes in part read only the rows written since it, and unit tests run
only when a definition changed: they check a model's logic on fixed inputs, which neither new
data nor the clock can change.

The earlier build is the artifacts of the last successful run (manifest.json, sources.json,
run_results.json) copied to a folder of their own, with a fingerprint of the two project
files.

A run with nothing new (the hourly run on a quiet hour) builds only what the clock reaches:
when every table the project reads as a source holds what it held when the last successful
build started (``source_watermarks``), and no file of the project changed (``definitions_
fingerprint``), nothing fresher, modified or written by the operational flows can be
selected, and dbt's freshness check and its comparison of definitions are skipped. The
fingerprint of those inputs is saved with a successful build and removed before every build,
so a build that fails or crashes leaves none and the next run compares as usual.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

from flows.files import add_files

CLOCK_MACRO = "macro.leadflow.as_of"
ALWAYS_REBUILT = ("source:ops+",)
REBUILT_WHEN_FRESHER_OR_CHANGED = ("source_status:fresher+", "state:modified+")
STATE_ARTIFACTS = ("manifest.json", "sources.json", "run_results.json")
# What a unit test's outcome depends on (with the macros, which dbt folds into state:modified).
DEFINITION_TYPES = ("model", "seed", "snapshot", "unit_test")
PROJECT_FILES = ("dbt_project.yml", "profiles.yml")
FINGERPRINT_FILE = "project.sha256"
# The inputs the last successful build read (definitions and source tables), for a run with
# nothing new: see quiet_selection.
INPUTS_FILE = "inputs.sha256"
# What dbt reads of the project folder (dbt_project.yml's paths; target/, logs/ and editor
# files are not read).
DEFINITION_FOLDERS = ("models", "macros", "seeds", "snapshots", "tests")
EVENTS_SOURCE = "source.leadflow.raw.events"
# Read by macros/tested_loads.sql: the newest event load the earlier build tested.
EVENTS_TESTED_THROUGH = "LEADFLOW_EVENTS_TESTED_THROUGH"
# Read by macros/tested_loads.sql: when the earlier build finished. Every row it wrote is
# marked with a time before that, every row a later run wrote with a time after it.
LAST_BUILD_FINISHED_AT = "LEADFLOW_LAST_BUILD_FINISHED_AT"


@dataclass(frozen=True)
class Selection:
    """Arguments and environment for ``dbt build`` and, for the run log, what they mean."""

    arguments: tuple[str, ...]
    environment: dict[str, str]
    description: str


def project_fingerprint(project_dir: Path) -> str:
    """What must be unchanged for an earlier build to be compared with: the two project files
    and the dbt version (a newer dbt may not read an older one's artifacts)."""
    digest = hashlib.sha256(version("dbt-core").encode())
    for name in PROJECT_FILES:
        path = project_dir / name
        digest.update(name.encode())
        digest.update(path.read_bytes() if path.exists() else b"")
    return digest.hexdigest()


def earlier_build(state_dir: Path, project_dir: Path) -> Path | None:
    """The saved artifacts of the last successful build, if they can be compared with now."""
    complete = all((state_dir / name).is_file() for name in (*STATE_ARTIFACTS, FINGERPRINT_FILE))
    if not complete:
        return None
    saved = (state_dir / FINGERPRINT_FILE).read_text().strip()
    return state_dir if saved == project_fingerprint(project_dir) else None


def save_build(target_dir: Path, state_dir: Path, project_dir: Path) -> None:
    """Keep this build's artifacts as the earlier build of the next run."""
    state_dir.mkdir(parents=True, exist_ok=True)
    for name in STATE_ARTIFACTS:
        shutil.copyfile(target_dir / name, state_dir / name)
    (state_dir / FINGERPRINT_FILE).write_text(project_fingerprint(project_dir) + "\n")


def definitions_fingerprint(project_dir: Path) -> str:
    """Every file dbt reads as a definition (models, macros, seeds, snapshots, tests, with
    their paths) and the project fingerprint: any change, even one dbt would find harmless,
    changes it."""
    digest = hashlib.sha256(project_fingerprint(project_dir).encode())
    for folder in DEFINITION_FOLDERS:
        files = sorted(path for path in (project_dir / folder).rglob("*") if path.is_file())
        add_files(digest, project_dir, files)
    return digest.hexdigest()


@dataclass(frozen=True)
class SourceTable:
    """A table the project reads with ``source()``; ``loaded_at_field`` when it is append-only
    with a load time (raw.*), None when rows change in place (ops.*)."""

    schema: str
    identifier: str
    loaded_at_field: str | None


def watermark_sql(table: SourceTable) -> str:
    """What identifies a source table's content: an append-only table with a load time by its
    row count and newest load (what dbt's freshness compares); any other by its row count and
    a sum of the hashes of its rows (in any order, each whole row)."""
    name = f'"{table.schema}"."{table.identifier}"'
    if table.loaded_at_field:
        marker = f'max("{table.loaded_at_field}")::varchar'
    else:
        marker = "sum(hash(source_row))::varchar"
    return f"select count(*), {marker} from {name} as source_row"


def source_watermarks(connection: Any, tables: Iterable[SourceTable]) -> dict[str, list[str]]:
    """Each source table's watermark (``watermark_sql``) by its name; a table that does not
    exist yet counts as absent."""
    existing = {
        (schema, name)
        for schema, name in connection.execute(
            "select table_schema, table_name from information_schema.tables"
        ).fetchall()
    }
    marks: dict[str, list[str]] = {}
    for table in sorted(tables, key=lambda source: (source.schema, source.identifier)):
        key = f"{table.schema}.{table.identifier}"
        if (table.schema, table.identifier) not in existing:
            marks[key] = ["absent"]
            continue
        row = connection.execute(watermark_sql(table)).fetchone()
        marks[key] = [str(value) for value in row]
    return marks


def inputs_fingerprint(definitions: str, watermarks: Mapping[str, Sequence[str]]) -> str:
    payload = json.dumps({"definitions": definitions, "sources": watermarks}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def saved_inputs(state_dir: Path) -> str | None:
    path = state_dir / INPUTS_FILE
    return path.read_text().strip() if path.is_file() else None


def save_inputs(state_dir: Path, fingerprint: str) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / INPUTS_FILE).write_text(fingerprint + "\n")


def forget_inputs(state_dir: Path) -> None:
    """Before a build: until it succeeds, the next run compares as usual."""
    (state_dir / INPUTS_FILE).unlink(missing_ok=True)


def forget_build(state_dir: Path) -> None:
    """No earlier build to compare with: the next run rebuilds everything."""
    shutil.rmtree(state_dir, ignore_errors=True)


def clock_readers(
    node_macros: Mapping[str, Sequence[str]], macro_macros: Mapping[str, Sequence[str]]
) -> list[str]:
    """Names of the nodes whose SQL calls the clock macro, directly or through other macros.

    ``node_macros`` maps a node's name to the macros it calls, ``macro_macros`` a macro's id
    to the macros it calls (both as in dbt's manifest).
    """
    callers: dict[str, set[str]] = defaultdict(set)
    for macro_id, callees in macro_macros.items():
        for callee in callees:
            callers[callee].add(macro_id)
    # Walk back from the clock: every macro met calls it, however indirectly.
    reaching_clock = {CLOCK_MACRO}
    to_visit = [CLOCK_MACRO]
    while to_visit:
        for caller in callers[to_visit.pop()] - reaching_clock:
            reaching_clock.add(caller)
            to_visit.append(caller)
    return sorted(
        name for name, macros in node_macros.items() if reaching_clock.intersection(macros)
    )


def events_tested_through(earlier: Path) -> str:
    """The newest ``loaded_at`` of raw.events when the earlier build ran (its ``dbt source
    freshness``), as a UTC timestamp literal; empty when that build saw no events."""
    results = json.loads((earlier / "sources.json").read_text()).get("results", [])
    for result in results:
        if result.get("unique_id") == EVENTS_SOURCE and result.get("max_loaded_at"):
            # dbt writes it with the UTC offset; loaded_at is a timestamp without time zone.
            return str(result["max_loaded_at"]).replace("T", " ").removesuffix("+00:00")
    return ""


def incremental_models(
    materializations: Mapping[str, str],
    changed: Sequence[str] | None,
    parents: Mapping[str, Sequence[str]] | None = None,
) -> list[str]:
    """The incremental models whose stored rows a changed definition can have made stale: those
    that changed, and those reading a changed view, directly or through other views (a view is
    read afresh, so nothing marks what its change altered, as a rebuilt table's built_at does);
    all of them when it is not known what changed. ``parents``: model name -> the names of the
    models, seeds and snapshots it reads."""
    changed_names = None if changed is None else set(changed)
    model_parents = parents or {}

    def reads_changed_view(name: str, seen: set[str]) -> bool:
        for parent in model_parents.get(name, ()):
            if materializations.get(parent) != "view" or parent in seen:
                continue
            seen.add(parent)
            if parent in (changed_names or ()) or reads_changed_view(parent, seen):
                return True
        return False

    return sorted(
        name
        for name, materialized in materializations.items()
        if materialized == "incremental"
        and (changed_names is None or name in changed_names or reads_changed_view(name, set()))
    )


def last_build_finished_at(earlier: Path) -> str:
    """When the earlier build finished (its ``run_results.json``), as a UTC timestamp literal.

    Each model marks the rows it writes with the time its dbt invocation started (macro
    run_started_at_timestamp), so rows marked later than this were written after the earlier
    build had tested everything it wrote: by this run, or by a failed one since."""
    metadata = json.loads((earlier / "run_results.json").read_text()).get("metadata", {})
    finished = str(metadata.get("generated_at") or "")
    return finished.replace("T", " ").removesuffix("Z").removesuffix("+00:00")


def build_selection(
    earlier: Path | None,
    clock_nodes: Iterable[str],
    *,
    changed: Sequence[str] | None,
    materializations: Mapping[str, str] | None = None,
    parents: Mapping[str, Sequence[str]] | None = None,
) -> Selection:
    """``changed``: the models, seeds, snapshots and unit tests that differ from the earlier
    build's (dbt's ``state:modified``); None when that is not known, which counts as
    everything. ``materializations``: model name -> materialization; ``parents``: model name
    -> what it reads. A changed incremental model's stored rows (or those of one reading a
    changed view) were written by the old definition and a run writes only some rows again,
    so the build starts it afresh (``--full-refresh``)."""
    if earlier is None:
        return Selection(
            (),
            {EVENTS_TESTED_THROUGH: "", LAST_BUILD_FINISHED_AT: ""},
            "everything (no earlier build to compare with)",
        )
    selectors = (
        *REBUILT_WHEN_FRESHER_OR_CHANGED,
        *ALWAYS_REBUILT,
        *(f"{name}+" for name in clock_nodes),
    )
    description = "what newer raw data, changed definitions, operational tables and the clock reach"
    unit_tests: tuple[str, ...] = ()
    if changed is not None and not changed:
        unit_tests = ("--exclude-resource-type", "unit_test")
        description += "; no definition changed, so no unit tests"
    full_refresh: tuple[str, ...] = ()
    changed_incremental = incremental_models(materializations or {}, changed, parents)
    if changed_incremental:
        full_refresh = ("--full-refresh",)
        description += (
            f"; incremental models changed or read a changed view "
            f"({', '.join(changed_incremental)}), "
            "so they and the others it builds are built afresh"
        )
    return Selection(
        ("--select", *selectors, "--state", str(earlier), *unit_tests, *full_refresh),
        {
            EVENTS_TESTED_THROUGH: events_tested_through(earlier),
            LAST_BUILD_FINISHED_AT: last_build_finished_at(earlier),
        },
        description,
    )


def nothing_new(
    earlier: Path | None, clock_nodes: Sequence[str], saved: str | None, current: str | None
) -> bool:
    """Whether a run may build only what the clock reaches: there is an earlier build to
    compare with, and the inputs it read (``saved``, kept only when it succeeded) are the
    inputs now (``current``)."""
    return earlier is not None and bool(clock_nodes) and current is not None and saved == current


def quiet_selection(earlier: Path, clock_nodes: Iterable[str]) -> Selection:
    """The build of a run with nothing new since the earlier build (same definitions, same
    source tables): only what reads the clock and what is downstream of it, the data tests of
    those, no unit tests (no definition changed). The tests read what the earlier build left
    as already tested, as in any incremental run."""
    return Selection(
        (
            "--select",
            *(f"{name}+" for name in clock_nodes),
            "--exclude-resource-type",
            "unit_test",
        ),
        {
            EVENTS_TESTED_THROUGH: events_tested_through(earlier),
            LAST_BUILD_FINISHED_AT: last_build_finished_at(earlier),
        },
        "only what the clock reaches: no new data, no changed definition and no operational "
        "table changed since the last build",
    )
