"""The ``leadflow`` command: generate sample data, run the pipeline, inspect what it did."""

from __future__ import annotations

import atexit
import json
import os
import signal
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table
from typer._click import Context as ClickContext  # typer vendors click: its type for help
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

from flows.runs import interrupted_by, raise_interrupt
from flows.settings import (
    ConfigError,
    Settings,
    WarehouseUnreachableError,
    apply_prefect_defaults,
    load_settings,
)
from flows.warehouse import Connection, WarehouseTarget

if TYPE_CHECKING:
    from flows.runs import LockHolder
    from flows.serve import DeploymentSpec

# What a value is, in the words of the help: typer would print Python's (`<bool>`, `<str>`,
# `<list[Path]>`). A flag takes no value, so it shows none.
VALUE_KINDS = {
    "bool": "",
    "str": "TEXT",
    "int": "INTEGER",
    "int range": "INTEGER",
    "float": "NUMBER",
    "float range": "NUMBER",
    "path": "PATH",
    "Path": "PATH",
    "datetime": "DATETIME",
}


def value_kind(python_label: str) -> str:
    """``<list[Path]>`` → ``PATH...``, ``<int range>`` → ``INTEGER``, ``<bool>`` → nothing."""
    label = python_label.strip("<>")
    if label.startswith("list[") and label.endswith("]"):
        return value_kind(label[5:-1]) + "..."
    return VALUE_KINDS.get(label, label.upper())


class ReadableOption(TyperOption):
    def display_type_rich(self, ctx: ClickContext) -> str | None:
        return self.metavar if self.metavar is not None else value_kind(self.display_type(ctx))


class ReadableArgument(TyperArgument):
    def display_type_rich(self, ctx: ClickContext) -> str | None:
        return value_kind(self.display_type(ctx))


def name_value_kinds(command: TyperCommand | TyperGroup) -> None:
    """Make every parameter of a command tree (help options too) name its value readably.

    Typer builds the parameters itself and has no hook to choose their class, so the built
    ones are given the readable subclass.
    """
    context = typer.Context(command)
    for parameter in command.get_params(context):
        if type(parameter) is TyperOption:
            parameter.__class__ = ReadableOption
        elif type(parameter) is TyperArgument:
            parameter.__class__ = ReadableArgument
    for subcommand in getattr(command, "commands", {}).values():
        name_value_kinds(subcommand)


class LeadFlowGroup(TyperGroup):
    """The ``leadflow`` command, whose help names values as PATH or INTEGER, not Python types."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        name_value_kinds(self)


app = typer.Typer(
    help="LeadFlow: one shared definition of a lead, its score, its hand-off and its nurture.",
    cls=LeadFlowGroup,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
sources_app = typer.Typer(
    help="Start mapping profiles and check source files before they are loaded.",
    no_args_is_help=True,
)
app.add_typer(sources_app, name="sources")
templates_app = typer.Typer(
    help="Lint and preview the nurture email templates.", no_args_is_help=True
)
app.add_typer(templates_app, name="templates")

out = Console()
err = Console(stderr=True)

VerboseOption = Annotated[
    bool, typer.Option("--verbose", "-v", help="Show Prefect's logs and full error traces.")
]


def show_version(requested: bool) -> None:
    if requested:
        out.print(f"leadflow {metadata.version('leadflow')}", highlight=False)
        raise typer.Exit()


@app.callback()
def leadflow(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=show_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    """LeadFlow: one shared definition of a lead, its score, its hand-off and its nurture."""


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[bold red]Error:[/bold red] {message}", highlight=False)
    raise typer.Exit(code)


def settings_or_fail() -> Settings:
    try:
        return load_settings()
    except ConfigError as error:
        fail(str(error), code=2)


# Exit code of a command that found the warehouse busy with a run (or waited too long for one).
BUSY = 4
EMAILS_NOT_SENT = 5


@contextmanager
def reading_warehouse(settings: Settings) -> Iterator[Connection]:
    """The warehouse for a command that only reads it, or a clear "busy" and exit 4."""
    from flows.runs import WarehouseBusyError, busy_message, read_holder, reading_lock
    from flows.warehouse import WarehouseLockedError, ensure_schema, open_warehouse

    try:
        with (
            reading_lock(settings.warehouse),
            open_warehouse(settings.warehouse) as connection,
        ):
            ensure_schema(connection)
            yield connection
    except WarehouseBusyError as error:
        fail(str(error), code=BUSY)
    except WarehouseUnreachableError as error:
        fail(str(error))
    except WarehouseLockedError as error:
        # A process that does not take LeadFlow's lock (dbt by hand, a DuckDB shell) has it.
        fail(f"{busy_message(read_holder(settings.warehouse))}: {error}", code=BUSY)


@contextmanager
def holding_warehouse(
    settings: Settings, warehouse: WarehouseTarget | None = None
) -> Iterator[None]:
    """Hold the warehouse for a command that writes it, waiting for a run that has it.

    ``warehouse`` is the lock's target when not the settings' warehouse: see ``digest``.
    """
    from flows.runs import WarehouseBusyError, run_lock

    def say_waiting(holder: LockHolder) -> None:
        err.print(
            f"[yellow]Waiting for {holder.describe()} to finish[/yellow] (up to "
            f"{settings.run_wait_seconds:g} s, LEADFLOW_RUN_WAIT_SECONDS) …",
            highlight=False,
        )

    try:
        with run_lock(
            warehouse or settings.warehouse,
            wait_seconds=settings.run_wait_seconds,
            on_wait=say_waiting,
        ):
            yield
    except WarehouseBusyError as error:
        fail(str(error), code=BUSY)
    except WarehouseUnreachableError as error:
        fail(str(error))


def prepare_prefect(settings: Settings, verbose: bool) -> None:
    """Environment for Prefect before it is imported: project-local state, a quiet terminal.

    Prefect keeps the full logs (visible in its UI); the terminal shows LeadFlow's summary.
    """
    apply_prefect_defaults(settings)
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    if not verbose:
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
        os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "WARNING")


@contextmanager
def sending_flow_logs() -> Iterator[None]:
    """Around a flow run: its last log lines reach Prefect before the process exits.

    Prefect sends logs in batches from a background worker and drains it only at exit, after
    the temporary server has stopped: the last batch then fails with "Error logging to API"
    on the user's terminal, and the run's last lines are missing from the UI.
    """
    try:
        yield
    finally:
        from prefect.logging.handlers import APILogWorker

        APILogWorker.drain_all(timeout=5)


def user_errors() -> tuple[type[Exception], ...]:
    """Exception types that describe a mistake in the user's input or configuration."""
    from flows.checks.gate import GateConfigError
    from flows.dbt_runner import DbtBuildError
    from flows.email.templates import TemplateError
    from flows.sources.api import ApiSourceError
    from flows.sources.inbox import SourceFileError
    from flows.sources.mapping import MappingError

    return (
        ConfigError,
        SourceFileError,
        MappingError,
        ApiSourceError,
        TemplateError,
        GateConfigError,
        DbtBuildError,
    )


def run_pipeline(
    settings: Settings, *, as_json: bool, verbose: bool, as_of: datetime | None = None
) -> None:
    # The lock first: a run that waits for another keeps no Prefect server running meanwhile.
    with holding_warehouse(settings):
        run_pipeline_holding_warehouse(settings, as_json=as_json, verbose=verbose, as_of=as_of)


def run_pipeline_holding_warehouse(
    settings: Settings, *, as_json: bool, verbose: bool, as_of: datetime | None = None
) -> None:
    prepare_prefect(settings, verbose)
    from flows.pipeline import lead_pipeline

    if not as_json:
        from flows.email.providers import email_sender

        err.print(
            f"[dim]Running lead_pipeline on {settings.warehouse}, email through "
            f"{email_sender(settings).provider} …[/dim]"
        )
    from flows.email.message import EmailProviderError

    try:
        with sending_flow_logs():
            summary = lead_pipeline(as_of=as_of)
    except EmailProviderError as error:
        fail(
            f"{error}\nFix it and run again (docs/operating.md, 'Going live with SendGrid').",
            code=2,
        )
    except user_errors() as error:
        fail(f"{error}\nNothing from this run was written; fix the problem and run again.")
    except Exception as error:
        if interrupted_by():  # the interrupt surfaced as a library's error (DuckDB, dbt)
            raise typer.Exit(130) from None
        if verbose:
            raise
        fail(
            f"the run failed: {type(error).__name__}: {error}\n"
            "Run again with --verbose for the full trace; the run's logs are in the Prefect UI."
        )
    if as_json:
        sys.stdout.write(json.dumps(summary.to_dict(), default=str) + "\n")
    else:
        out.print(summary.to_rich())
    for problem in summary.file_errors:
        err.print(f"[bold red]Error:[/bold red] {problem}", highlight=False)
    if summary.file_errors:
        err.print(
            "Nothing from that file was written; the other files were loaded and processed. "
            "Fix the file (`leadflow sources check` shows what would load) and run again: it "
            "is retried on every run until it loads.",
            highlight=False,
        )
        raise typer.Exit(1)
    if not summary.gate.passed:
        raise typer.Exit(3)
    if summary.could_not_send:
        err.print(
            "[bold red]Error:[/bold red] not every due email went out: "
            + ", ".join(summary.nurture_problems())
            + ". The reasons are listed above; a failed send is tried again on the next run "
            "(up to LEADFLOW_SEND_MAX_ATTEMPTS), an email that could not be rendered is in "
            "ops.quarantine until its template is fixed.",
            highlight=False,
        )
        raise typer.Exit(EMAILS_NOT_SENT)


@app.command()
def run(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the summary as one JSON object.")
    ] = False,
    as_of: Annotated[
        datetime | None,
        typer.Option(help="The run's clock in UTC (default: now), e.g. to reproduce a past run."),
    ] = None,
    verbose: VerboseOption = False,
) -> None:
    """Run the whole pipeline once over what is new in the inbox."""
    run_pipeline(settings_or_fail(), as_json=as_json, verbose=verbose, as_of=as_of)


def midnight_utc() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None, hour=0, minute=0, second=0, microsecond=0)


@app.command()
def generate(
    leads: Annotated[int, typer.Option(min=1, help="How many distinct people.")] = 5000,
    seed: Annotated[int, typer.Option(help="Same seed, same data.")] = 42,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Folder (default: the inbox).")
    ] = None,
    as_of: Annotated[
        datetime | None,
        typer.Option(help="Generate history up to this UTC time (default: today 00:00)."),
    ] = None,
) -> None:
    """Generate a realistic synthetic data set (leads from two sources, events, reps, outcomes)."""
    from flows.demo.generate import generate_dataset

    target = out_dir or settings_or_fail().inbox_dir
    dataset = generate_dataset(target, leads=leads, seed=seed, as_of=as_of or midnight_utc())
    table = Table(title=f"Generated into {dataset.out_dir}", title_justify="left")
    table.add_column("file")
    table.add_column("rows", justify="right")
    for name, rows in dataset.files.items():
        table.add_row(name, f"{rows:,}")
    out.print(table)
    out.print(f"{dataset.bad_rows:,} rows are deliberately malformed (they will be quarantined).")


def demo_clock(data_root: Path, *, leads: int, seed: int, today: datetime) -> datetime:
    """The clock of the sample data: the one the last demo of these leads and seed used.

    The generator writes the same bytes for the same leads, seed and clock, so a second demo,
    even on another day, loads nothing new; a new clock would make every file a new version
    of itself and load every person again. A different size or seed starts a new clock.
    """
    record = data_root / "demo.json"
    try:
        previous = json.loads(record.read_text())
        if (previous["leads"], previous["seed"]) == (leads, seed):
            return datetime.fromisoformat(previous["as_of"])
    except (OSError, ValueError, KeyError, TypeError):
        pass  # no demo yet, or a record we cannot read: start from today
    temporary = record.with_name(f".{record.name}.tmp")
    temporary.write_text(json.dumps({"leads": leads, "seed": seed, "as_of": today.isoformat()}))
    os.replace(temporary, record)
    return today


@app.command()
def demo(
    leads: Annotated[int, typer.Option(min=1, help="How many sample people to generate.")] = 5000,
    seed: Annotated[int, typer.Option(help="Seed of the sample data.")] = 42,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    verbose: VerboseOption = False,
) -> None:
    """Generate sample data into the inbox and run the whole pipeline on it."""
    from flows.demo.generate import generate_dataset

    settings = settings_or_fail()
    settings.ensure_dirs()
    clock = demo_clock(settings.data_root, leads=leads, seed=seed, today=midnight_utc())
    dataset = generate_dataset(settings.inbox_dir, leads=leads, seed=seed, as_of=clock)
    if not as_json:
        total = sum(dataset.files.values())
        err.print(f"[dim]Generated {total:,} sample rows into {dataset.out_dir}.[/dim]")
    run_pipeline(settings, as_json=as_json, verbose=verbose)
    if not as_json:
        out.print(
            f"\nEmails: {settings.outbox_dir}   Sales tasks: {settings.tasks_dir}   "
            f"Warehouse: {settings.warehouse}\n"
            "Next: `leadflow quarantine` shows rejected rows, `leadflow tasks` the sales queue."
        )


@app.command()
def serve(
    deployments_file: Annotated[
        Path | None,
        typer.Option(
            "--file", help="The deployments to serve (default: the project's prefect.yaml)."
        ),
    ] = None,
    verbose: VerboseOption = False,
) -> None:
    """Serve every deployment of prefect.yaml on its schedule until Ctrl-C.

    Uses the Prefect server in PREFECT_API_URL, or starts one on 127.0.0.1 and stops it on exit.
    """
    from flows.serve import load_deployment_specs, prefect_server

    settings = settings_or_fail()
    path = deployments_file or settings.project_dir / "prefect.yaml"
    try:
        specs = load_deployment_specs(path, settings.schedule_timezone)
    except ConfigError as error:
        fail(str(error), code=2)
    prepare_prefect(settings, verbose)
    try:
        with prefect_server(Path(os.environ["PREFECT_HOME"])) as server:
            how = "started here, stopped on exit" if server.started_here else "PREFECT_API_URL"
            out.print(f"Prefect UI: {server.ui_url}  ({how})", highlight=False)
            serve_deployments(settings, specs, server.ui_url)
    except ConfigError as error:
        fail(str(error))
    out.print("Stopped.")


def serve_deployments(settings: Settings, specs: list[DeploymentSpec], ui_url: str) -> None:
    """Create the limits, show what is served and when it next runs, then serve until Ctrl-C."""
    from prefect import serve as prefect_serve

    from flows.limits import ensure_concurrency_limits
    from flows.serve import next_run_at, runner_deployments, watch_failed_runs

    limits = ensure_concurrency_limits(settings)
    deployments = runner_deployments(specs)
    now = datetime.now(UTC)
    table = Table(title="Deployments served (Ctrl-C stops)", title_justify="left")
    for column in ("deployment", "schedule", "next run", "parameters"):
        table.add_column(column)
    for spec, deployment in zip(specs, deployments, strict=True):
        upcoming = next_run_at(spec, now)
        table.add_row(
            f"{deployment.flow_name}/{spec.name}",
            "\n".join(schedule.describe() for schedule in spec.schedules) or "-",
            f"{upcoming:%Y-%m-%d %H:%M:%S %Z}" if upcoming else "-",
            json.dumps(spec.parameters) if spec.parameters else "-",
        )
    out.print(table)
    out.print(
        "Concurrency limits: "
        + ", ".join(f"{limit.name} ({limit.slots} slots)" for limit in limits),
        highlight=False,
    )
    flow_names = sorted({deployment.flow_name for deployment in deployments})
    with watch_failed_runs(
        flow_names,
        lambda run: err.print(f"[bold red]{run.describe(ui_url)}[/bold red]", highlight=False),
    ):
        # One run at a time from this process: every LeadFlow flow writes the DuckDB warehouse,
        # which allows one writer, so runs due meanwhile wait as scheduled instead of each
        # starting a process that would only wait for the writer limit.
        prefect_serve(*deployments, print_starting_message=False, limit=1)


quarantine_app = typer.Typer(
    help="Rows that were not loaded or acted on: list them, export them to fix, resubmit.",
    invoke_without_command=True,
)
app.add_typer(quarantine_app, name="quarantine")


@quarantine_app.callback()
def quarantine(
    context: typer.Context,
    limit: Annotated[int, typer.Option(min=1, help="Sample rows to show per reason.")] = 3,
) -> None:
    """Open quarantined rows, grouped by stage and reason (the default)."""
    if context.invoked_subcommand is not None:
        return
    settings = settings_or_fail()
    with reading_warehouse(settings) as connection:
        rows = connection.execute(
            """
            select stage, entity, reason_code, count(*) as n,
                   list(coalesce(source_file || ':' || source_line, record_key) || ' ' || reason
                        order by quarantined_at desc)[1:?] as samples
            from ops.quarantine where resolved_at is null group by all order by n desc
            """,
            [limit],
        ).fetchall()
    if not rows:
        out.print("Nothing in quarantine.")
        return
    table = Table(title="Quarantine (open rows)", title_justify="left")
    for column in ("stage", "entity", "reason", "rows", "examples"):
        table.add_column(column, justify="right" if column == "rows" else "left")
    for stage, entity, reason, count, samples in rows:
        table.add_row(stage, entity, reason, f"{count:,}", "\n".join(samples))
    out.print(table)
    total = sum(count for *_, count, _ in rows)
    out.print(
        f"{total:,} open rows in {len(rows)} groups; the examples are each group's latest "
        f"{limit} (--limit to see more, `leadflow quarantine export` to get them all).",
        highlight=False,
    )


@quarantine_app.command("export")
def quarantine_export(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the CSV files to fix.")],
    reason: Annotated[str | None, typer.Option(help="Only rows rejected for this reason.")] = None,
) -> None:
    """Write rejected source rows as CSV, one file per source file, ready to be corrected."""
    from flows.sources.resubmit import export_quarantined

    settings = settings_or_fail()
    with reading_warehouse(settings) as connection:
        written = export_quarantined(connection, out_dir, reason=reason)
    if not written:
        out.print("No open extract rejections" + (f" for {reason}." if reason else "."))
        return
    for path, count in written.items():
        out.print(f"{path}: {count:,} rows")
    out.print("Fix them, then: leadflow quarantine resubmit " + " ".join(map(str, written)))


@quarantine_app.command("resubmit")
def quarantine_resubmit(
    files: Annotated[list[Path], typer.Argument(help="Corrected files from `quarantine export`.")],
) -> None:
    """Load corrected rows; rows still wrong are quarantined again with their current reason."""
    from flows.runs import new_run_id, utc_now
    from flows.sources.inbox import SourceFileError
    from flows.sources.mapping import MappingError, load_mappings
    from flows.sources.resubmit import resubmit
    from flows.warehouse import ensure_schema, open_warehouse

    settings = settings_or_fail()
    as_of = utc_now()
    try:
        mappings = load_mappings(settings.mapping_folders)
        with holding_warehouse(settings), open_warehouse(settings.warehouse) as connection:
            ensure_schema(connection)
            staged = resubmit(connection, files, mappings, run_id=new_run_id(as_of), as_of=as_of)
    except (SourceFileError, MappingError) as error:
        fail(f"{error}\nNothing was loaded.")
    for result in staged:
        reasons = ", ".join(f"{code} {n}" for code, n in sorted(result.reasons.items()))
        out.print(
            f"{result.file.path.name}: {result.rows_loaded:,} loaded, "
            f"{result.rows_quarantined:,} still quarantined" + (f" ({reasons})" if reasons else "")
        )
    out.print("The next `leadflow run` scores and routes the loaded rows.")


def shown_of_total(shown: int, total: int, what: str) -> str:
    """How much of the whole a listing shows, and how to see more."""
    if shown < total:
        return f"Showing {shown:,} of {total:,} {what}; --limit to see more."
    return f"All {total:,} {what} shown."


@app.command()
def tasks(
    rep: Annotated[str | None, typer.Option(help="Only this rep's tasks.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="How many tasks to show.")] = 20,
) -> None:
    """Open sales tasks, highest priority first (sales-ready hand-offs lead), and the tasks
    waiting for room in each rep's daily capacity."""
    from flows.sales.tasks import queued_tasks_by_rep

    settings = settings_or_fail()
    with reading_warehouse(settings) as connection:
        rows = connection.execute(
            """
            select owner_rep_id, due_at, reason, title, why_now, count(*) over () as total
            from ops.sales_tasks
            where status = 'open' and (? is null or owner_rep_id = ?)
            order by owner_rep_id, priority desc nulls last, due_at, task_id limit ?
            """,
            [rep, rep, limit],
        ).fetchall()
        total = rows[0][-1] if rows else 0
        queued = {
            owner: count
            for owner, count in queued_tasks_by_rep(connection).items()
            if rep is None or owner == rep
        }
    if queued:
        out.print(
            "Over capacity, waiting for room: "
            + ", ".join(f"{owner} {count:,} queued" for owner, count in queued.items()),
            style="yellow",
            highlight=False,
        )
    open_tasks = "open tasks" + (f" of {rep}" if rep else "")
    if not rows:
        out.print(f"No {open_tasks}.")
        return
    table = Table(title="Open sales tasks", title_justify="left")
    for column in ("rep", "due (UTC)", "reason", "task", "why now"):
        table.add_column(column)
    for owner, due_at, reason, task, why, _ in rows:
        table.add_row(owner, f"{due_at:%Y-%m-%d %H:%M}", reason, task, why)
    out.print(table)
    out.print(shown_of_total(len(rows), total, open_tasks), highlight=False)


@sources_app.command("check")
def sources_check(
    path: Annotated[Path, typer.Argument(help="A file, or a folder of files, to check.")],
    mapping: Annotated[
        str | None,
        typer.Option(
            help="Check against this mapping profile: a path, or a configured profile's name "
            "(e.g. hubspot_contacts). Default: the configured profiles, by file name."
        ),
    ] = None,
    samples: Annotated[int, typer.Option(help="Sample rejected rows to show per file.")] = 3,
) -> None:
    """Dry run: what each file would load and quarantine, and why (nothing is written).

    Reads CSV, JSON lines and Parquet files, as a run does, through the same load.
    """
    from flows.sources.check import check_files
    from flows.sources.mapping import MappingError, find_mapping, load_mappings

    if not path.exists():
        fail(f"{path} does not exist; give a file or a folder of inbox files")
    try:
        if mapping:
            profile = find_mapping(mapping, settings_or_fail().mapping_folders)
            # One profile given: it applies to every file checked, whatever the file's name.
            mappings = [replace(profile, files=("*",))]
        else:
            mappings = load_mappings(settings_or_fail().mapping_folders)
    except MappingError as error:
        fail(str(error))
    reports = check_files(path, mappings=mappings, samples=samples)
    if not reports:
        out.print(f"No CSV, JSON-lines or Parquet files in {path}.")
        return
    table = Table(title=f"Dry run of {path} (nothing written)", title_justify="left")
    for column in ("file", "entity", "rows", "would load", "would quarantine"):
        table.add_column(column, justify="left" if column in ("file", "entity") else "right")
    for report in reports:
        counts = (
            ("", "", "")
            if report.error or report.same_as
            else (report.rows_read, report.rows_loaded, report.rows_quarantined)
        )
        table.add_row(
            report.path.name, report.entity, *(f"{n:,}" if n != "" else "-" for n in counts)
        )
    out.print(table)
    for report in reports:
        if report.error:
            err.print(f"[red]{report.path.name}[/red]: {report.error}", highlight=False)
            continue
        if report.same_as:
            out.print(
                f"[bold]{report.path.name}[/bold]: the same content as {report.same_as.name} "
                "under the same mapping; a run loads it once",
                highlight=False,
            )
        if report.absent_columns:
            out.print(
                f"[bold]{report.path.name}[/bold]: absent column(s), loaded as null or their "
                f"fallback: {', '.join(report.absent_columns)}",
                highlight=False,
            )
        if report.reasons:
            reasons = ", ".join(f"{code} {n}" for code, n in sorted(report.reasons.items()))
            out.print(f"[bold]{report.path.name}[/bold]: {reasons}", highlight=False)
            for sample in report.samples:
                out.print(f"  {sample}", highlight=False)
    if any(report.error for report in reports):
        raise typer.Exit(1)


@sources_app.command("init")
def sources_init(
    file: Annotated[Path, typer.Argument(help="The export to start a profile from.")],
    entity: Annotated[
        str, typer.Option(help="What the export holds: leads, events, outcomes or reps.")
    ] = "leads",
    source: Annotated[
        str | None,
        typer.Option(help="The source system's name (default: from the file name)."),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(help="Where to write the profile (default: <source>.yml here)."),
    ] = None,
    force: Annotated[bool, typer.Option(help="Replace the output file if it exists.")] = False,
) -> None:
    """Write a starting mapping profile from an export's header and a sample of its values.

    Detects the format and each column's type, suggests canonical targets by name, maps Yes/No
    flags and placeholders such as "Select", and keeps the other columns of a leads export as
    custom attributes. Review it, then check the export with `leadflow sources check`.
    """
    from flows.sources.init import InitError, draft_profile, write_profile

    if not file.is_file():
        fail(f"{file} is not a file; give the export to start a profile from")
    try:
        draft = draft_profile(file, entity, source)
        written = write_profile(draft, file, output or Path(f"{draft.source}.yml"), force=force)
    except InitError as error:
        fail(str(error))
    mapped = ", ".join(f"{target} <- {column.name}" for target, column in draft.columns.items())
    out.print(f"Wrote {written} ({draft.entity.name}, {draft.rows_sampled} rows sampled).")
    out.print(f"Suggested: {mapped or 'no canonical column recognised'}.", highlight=False)
    if draft.attributes:
        out.print(f"Custom attributes: {', '.join(draft.attributes)}.", highlight=False)
    out.print(f"Review it, then: leadflow sources check {file} --mapping {written}")


@app.command()
def docs() -> None:
    """Build the dbt docs (definitions, lineage) and the GX Data Docs; print where they are."""
    from flows.checks.gate import build_data_docs
    from flows.dbt_runner import DbtBuildError, generate_docs
    from flows.warehouse import ensure_schema, open_warehouse

    settings = settings_or_fail()
    with holding_warehouse(settings):
        with open_warehouse(settings.warehouse) as connection:
            ensure_schema(connection)  # the sources must exist for the catalog
        try:
            dbt_index = generate_docs(settings)
        except DbtBuildError as error:
            fail(str(error))
    out.print(f"dbt docs: {dbt_index}")
    out.print(f"GX Data Docs: {build_data_docs(settings.expectations_dir)}")


@app.command()
def backup(
    destination: Annotated[
        Path | None,
        typer.Option("--to", help="Folder to write the backup into (default: data/backups)."),
    ] = None,
) -> None:
    """Copy the DuckDB warehouse into a new backup folder, waiting for a run that has it."""
    from flows.backup import BackupError, backup_warehouse, read_manifest
    from flows.runs import WarehouseBusyError

    settings = settings_or_fail()
    try:
        folder = backup_warehouse(settings, destination or settings.data_root / "backups")
    except (BackupError, WarehouseBusyError) as error:
        fail(str(error), code=BUSY if isinstance(error, WarehouseBusyError) else 1)
    manifest = read_manifest(folder)
    run = (
        f"run {manifest.last_run_id} ({manifest.last_run_status})"
        if manifest.last_run_id
        else "no run yet"
    )
    # soft_wrap: a path is never broken across lines (it is copied into `leadflow restore`).
    out.print(
        f"Backed up to {folder}: {manifest.rows['raw.leads']:,} lead rows, last {run}.",
        soft_wrap=True,
    )


@app.command()
def restore(
    backup_folder: Annotated[
        Path, typer.Argument(help="A folder `leadflow backup` wrote (leadflow-backup-…).")
    ],
) -> None:
    """Put a backup's warehouse in place, keeping the sends and tasks made since it was taken."""
    from flows.backup import BackupError, restore_warehouse
    from flows.runs import WarehouseBusyError

    settings = settings_or_fail()
    try:
        report = restore_warehouse(settings, backup_folder)
    except (BackupError, WarehouseBusyError) as error:
        fail(str(error), code=BUSY if isinstance(error, WarehouseBusyError) else 1)
    out.print(f"Restored the warehouse from {report.restored_from}.", soft_wrap=True)
    if report.replaced_kept_at is not None:
        out.print(
            f"The warehouse it replaced is kept at {report.replaced_kept_at}.", soft_wrap=True
        )
    if report.carried_forward is None:
        err.print(
            "[yellow]The replaced warehouse could not be read: emails sent, tasks made and "
            "opt-outs recorded after the backup are not in the restored ledgers.[/yellow] "
            "Keep the business-hours sends paused until the next run has loaded the landed "
            "SendGrid events (docs/operations.md, 'Backup and restore')."
        )
    elif any(report.carried_forward.values()):
        carried = ", ".join(
            f"{count:,} {table}" for table, count in report.carried_forward.items() if count
        )
        out.print(f"Carried forward from it, so nothing is done twice: {carried}.")
    out.print("The next run builds every dbt model again from the restored sources.")


@templates_app.command("lint")
def templates_lint() -> None:
    """Check every track and template: front matter, variables, links, unsubscribe, subject."""
    from flows.email.templates import (
        TemplateError,
        lint_templates,
        load_sample_context,
        templates_rendered_per_shape,
    )

    settings = settings_or_fail()
    try:
        problems = lint_templates(
            settings.templates_dir,
            load_sample_context(settings.templates_dir),
            requires_unsubscribe_groups=settings.sendgrid_api_key is not None,
        )
    except TemplateError as error:
        fail(str(error))
    for problem in problems:
        where = f"{problem.file}" + (f":{problem.line}" if problem.line else "")
        err.print(f"[red]{where}[/red]: {problem.message}", highlight=False)
    if problems:
        raise typer.Exit(1)
    # Not a problem, but worth knowing: these render once per value of the fields they test.
    for template, fields in templates_rendered_per_shape(settings.templates_dir).items():
        out.print(
            f"{template}: output varies with {', '.join(sorted(fields))} (tested, not just "
            "shown): rendered once per value, not once for all leads",
            highlight=False,
        )
    out.print(f"All templates in {settings.templates_dir} are fine.")


@templates_app.command("preview")
def templates_preview(
    template: Annotated[
        str | None,
        typer.Argument(help="Path under templates/, e.g. tracks/warm_up/01-welcome.html"),
    ] = None,
    all_steps: Annotated[
        bool,
        typer.Option(
            "--all",
            help="Every step of every track for every lead of templates/sample_leads.yml, "
            "as HTML pages with an index (needs --out DIR).",
        ),
    ] = False,
    context: Annotated[
        Path | None, typer.Option(help="YAML context (default: templates/sample_context.yml).")
    ] = None,
    out_file: Annotated[
        Path | None,
        typer.Option("--out", help="Write the HTML here (with --all: a folder for the gallery)."),
    ] = None,
) -> None:
    """Render one template with a sample context: subject, preheader and body (or --all)."""
    from flows.email.templates import (
        TemplateError,
        load_context_file,
        load_sample_context,
        preview,
    )

    settings = settings_or_fail()
    if all_steps:
        if template or context:
            fail(
                "--all renders every template for the leads of templates/sample_leads.yml: "
                "leave out TEMPLATE and --context"
            )
        if out_file is None:
            fail("--all needs --out DIR, the folder to write the gallery to")
        templates_gallery(settings, out_file)
        return
    if template is None:
        fail("give a TEMPLATE, e.g. tracks/warm_up/01-welcome.html, or --all --out DIR")
    try:
        values = (
            load_context_file(context) if context else load_sample_context(settings.templates_dir)
        )
        rendered = preview(settings.templates_dir, template, values)
    except TemplateError as error:
        fail(str(error))
    out.print(f"[bold]Subject:[/bold] {rendered.subject}", highlight=False)
    out.print(f"[bold]Preheader:[/bold] {rendered.preheader}", highlight=False)
    if out_file:
        out_file.write_text(rendered.html)
        out.print(f"HTML written to {out_file}")
    else:
        out.print(rendered.text, highlight=False)


webhook_app = typer.Typer(
    help="Receive SendGrid's signed email events and signed sales outcomes for the next run.",
    no_args_is_help=True,
)
app.add_typer(webhook_app, name="webhook")


@webhook_app.command("serve")
def webhook_serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8787,
) -> None:
    """Receive SendGrid's Event Webhook at POST /sendgrid/events (needs
    LEADFLOW_SENDGRID_WEBHOOK_PUBLIC_KEY) and signed sales outcomes at POST /sales/outcomes
    (needs LEADFLOW_SALES_CALLBACK_SECRET); each run's extract loads what it landed."""
    settings = settings_or_fail()
    from flows.email.webhook import serve as serve_webhook

    try:
        serve_webhook(settings, host, port)
    except ConfigError as error:
        fail(str(error), code=2)


def templates_gallery(settings: Settings, out_dir: Path) -> None:
    from flows.email.gallery import render_gallery
    from flows.email.templates import TemplateError

    try:
        gallery = render_gallery(settings.templates_dir, out_dir)
    except TemplateError as error:
        fail(str(error))
    out.print(f"{len(gallery.entries)} emails: open {gallery.index}")
    for entry in gallery.failures:
        err.print(f"[red]{entry.page}[/red]: {entry.error}", highlight=False)
    if gallery.failures:
        raise typer.Exit(1)


@templates_app.command("send-test")
def templates_send_test(
    template: Annotated[
        str, typer.Argument(help="Path under templates/, e.g. tracks/warm_up/01-welcome.html")
    ],
    to: Annotated[str, typer.Option("--to", help="Send the test email to this address.")],
    lead: Annotated[
        str | None,
        typer.Option(help="Render with this lead's values from the warehouse (read-only)."),
    ] = None,
) -> None:
    """Send one rendered email through the configured provider, marked [TEST], not recorded."""
    from email.utils import parseaddr

    from flows.email.message import EmailProviderError
    from flows.email.proof import (
        build_test_batch,
        context_from_lead,
        lead_row,
        new_test_key,
        send_test,
    )
    from flows.email.providers import email_sender
    from flows.email.templates import TemplateError, load_sample_context, load_tracks
    from flows.warehouse import open_warehouse

    settings = settings_or_fail()
    message_key = new_test_key()
    try:
        if lead:
            if not settings.has_warehouse():
                fail(f"--lead: no warehouse at {settings.warehouse} yet; run `leadflow run`")
            with open_warehouse(settings.warehouse, read_only=True) as connection:
                values = context_from_lead(lead_row(connection, lead), settings, message_key)
        else:
            values = {
                **load_sample_context(settings.templates_dir),
                "unsubscribe_url": settings.unsubscribe_url.format(message_key=message_key),
                "sender": {
                    "name": parseaddr(settings.email_from)[0] or settings.email_from,
                    "address": settings.sender_address,
                },
            }
        batch = build_test_batch(
            settings.templates_dir,
            template,
            load_tracks(settings.templates_dir),
            values,
            lead_id=lead or "sample",
            to_address=to,
            from_email=settings.email_from,
            message_key=message_key,
        )
        sender = email_sender(settings)
        result = send_test(sender, batch)
    except (ConfigError, TemplateError, EmailProviderError) as error:
        fail(str(error))
    out.print(
        f"Sent {batch.recipients[0].subject!r} to {to} through {sender.provider} "
        f"(message {result.provider_message_id or message_key}); not recorded in the send ledger."
    )


def main() -> None:
    """Entry point of the ``leadflow`` script.

    DuckDB's nanobind bindings print a screen of benign "leaked instance" warnings when the
    interpreter finalises after dbt and pandas have used it. So once the command is done and
    the exit handlers have run (they stop Prefect's temporary server), the process exits
    without finalising, which keeps the terminal to LeadFlow's own output.
    """
    # A terminated run stops like an interrupted one: the exit handlers then stop Prefect's
    # temporary server, which would otherwise outlive it, and the run is recorded interrupted.
    signal.signal(signal.SIGTERM, raise_interrupt)
    signal.signal(signal.SIGINT, raise_interrupt)
    code = 1
    try:
        app()
        code = 0
    except SystemExit as exit_request:
        code = (
            exit_request.code
            if isinstance(exit_request.code, int)
            else int(bool(exit_request.code))
        )
        if code == 130:  # typer's exit for a KeyboardInterrupt (Ctrl-C, or SIGTERM above)
            err.print("Interrupted.")
    except KeyboardInterrupt:
        err.print("Interrupted.")
        code = 130
    except BaseException:
        traceback.print_exc()
    finally:
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


scoring_app = typer.Typer(
    help="Learn the scoring points from outcomes and propose them for review.",
    no_args_is_help=True,
)
app.add_typer(scoring_app, name="scoring")


@scoring_app.command("fit")
def scoring_fit(
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="Folder of the proposal (default: data/scoring/proposed)."),
    ] = None,
    folds: Annotated[int, typer.Option(min=2, help="Cross-validation folds.")] = 5,
    precision: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Choose the MQL threshold for this precision instead of today's MQL volume.",
        ),
    ] = None,
    apply: Annotated[
        bool,
        typer.Option("--apply", help="Copy the proposal over the seeds and the MQL thresholds."),
    ] = False,
) -> None:
    """Fit fit-rule and event points to what converted; compare AUCs; write proposed seeds."""
    from flows.scoring.features import FeaturesUnavailableError
    from flows.scoring.propose import percent, propose_points
    from flows.scoring.seeds import SeedError, apply_proposal

    settings = settings_or_fail()
    target = out_dir or settings.data_root / "scoring" / "proposed"
    try:
        with reading_warehouse(settings) as connection:
            proposal = propose_points(
                connection, settings.dbt_project_dir, target, folds=folds, precision=precision
            )
    except (FeaturesUnavailableError, SeedError, ValueError) as error:
        fail(str(error))
    table = Table(title="Proposed points (old → new)", title_justify="left")
    for column, justify in (("kind", "left"), ("name", "left"), ("current", "right"),
                            ("proposed", "right"), ("change", "right")):  # fmt: skip
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for change in proposal.changes:
        table.add_row(
            change.kind, change.name, str(change.old), str(change.new),
            f"{change.new - change.old:+d}" if change.new != change.old else "",
        )  # fmt: skip
    out.print(table)
    validation, now, new = proposal.validation, proposal.current_thresholds, proposal.thresholds
    out.print(
        f"{proposal.lead_count:,} leads, {proposal.converted_count:,} converted. Cross-validated "
        f"AUC ({validation.folds} folds): current {validation.current_auc:.4f}, fitted "
        f"{validation.fitted_auc:.4f}.\nMQLs: {now.mql_count:,} today (precision "
        f"{percent(now.precision)}, recall {percent(now.recall)}) → {new.mql_count:,} "
        f"(precision {percent(new.precision)}, recall {percent(new.recall)}).",
        highlight=False,
    )
    out.print(f"Proposal and diff: {target}", highlight=False)
    if apply:
        try:
            changed = apply_proposal(target, settings.dbt_project_dir)
        except SeedError as error:
            fail(str(error))
        out.print(
            "Applied to "
            + ", ".join(str(path) for path in changed)
            + "; the next `leadflow run` scores with them.",
            highlight=False,
        )
    else:
        out.print("Nothing changed the scoring: review the diff, then --apply.", highlight=False)


@app.command()
def digest(
    as_of: Annotated[
        datetime | None,
        typer.Option(
            help="The digest's clock in UTC (default: now); its date in "
            "LEADFLOW_SCHEDULE_TIMEZONE is the digest's day."
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the result as one JSON object.")
    ] = False,
    verbose: VerboseOption = False,
) -> None:
    """Email each rep their open tasks, most urgent first: once per rep and day."""
    from flows.email.message import EmailProviderError
    from flows.sales.digest import DigestUnavailableError

    settings = settings_or_fail()
    mistakes: tuple[type[Exception], ...] = (*user_errors(), DigestUnavailableError)
    # The lock the digest flow takes (flows/digest.py): the DuckDB file's, which on PostgreSQL
    # keeps digests on this host in turn but lets them run beside a pipeline.
    with holding_warehouse(settings, settings.warehouse_path):
        prepare_prefect(settings, verbose)
        from flows.digest import reps_daily_digest

        try:
            with sending_flow_logs():
                result = reps_daily_digest(as_of=as_of)
        except (EmailProviderError, ConfigError) as error:
            fail(str(error), code=2)
        except mistakes as error:
            fail(f"{error}\nNo digest was sent; fix the problem and run again.")
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
    elif result["status"] == "disabled":
        out.print("The reps' digest is turned off (LEADFLOW_DIGEST_ENABLED=false).")
    else:
        out.print(
            f"Digests sent: {result['digests_sent']}, failed: {result['digests_failed']}.",
            highlight=False,
        )
    if result.get("digests_failed"):
        err.print(
            f"[bold red]Error:[/bold red] not every digest went out: {result['problem']}. "
            "Run `leadflow digest` again today to retry them; none is sent twice.",
            highlight=False,
        )
        raise typer.Exit(EMAILS_NOT_SENT)


@app.command()
def outcome(
    task_id: Annotated[str, typer.Argument(help="The task's id (task_id in the rep's task file).")],
    result: Annotated[
        str, typer.Argument(metavar="OUTCOME", help="accepted, rejected, won or lost.")
    ],
    reason: Annotated[
        str | None,
        typer.Option(help="Why (with rejected or lost): a reason of seed lifecycle_reasons."),
    ] = None,
    note: Annotated[str | None, typer.Option(help="A note for the record.")] = None,
) -> None:
    """Record sales' outcome of one task; the next run closes the task and re-stages the lead."""
    from flows.email.events import LandingWriter
    from flows.runs import utc_now
    from flows.sales.outcomes import (
        COMMAND_OUTCOMES,
        LANDING_PREFIX,
        TASK_STATUS_AFTER,
        OutcomeError,
        checked_reason,
        command_outcome,
        find_task,
        outcome_reasons,
    )

    settings = settings_or_fail()
    chosen = result.strip().lower()
    if chosen not in COMMAND_OUTCOMES:
        fail(f"{result!r} is not an outcome; give one of {', '.join(COMMAND_OUTCOMES)}")
    if not settings.has_warehouse():
        fail(f"no warehouse at {settings.warehouse} yet, so no tasks; run `leadflow run`")
    try:
        code = checked_reason(reason, outcome_reasons(settings.dbt_project_dir))
        with reading_warehouse(settings) as connection:
            task = find_task(connection, task_id)
    except OutcomeError as error:
        fail(f"{error}\nNothing was recorded.")
    record = command_outcome(task, chosen, code, note, utc_now())
    writer = LandingWriter(settings.sales_outcomes_landing_dir, prefix=LANDING_PREFIX)
    try:
        writer.append([record])
    finally:
        writer.close()
    ending = TASK_STATUS_AFTER[chosen] + (f" ({code})" if code else "")
    out.print(
        f"Recorded {chosen} for task {task.task_id} ({task.title}, lead {task.lead_id}, "
        f"now {task.status}). The next `leadflow run` loads it: the lead's pending tasks end "
        f"{ending} and the lead is re-staged.",
        highlight=False,
    )


outcomes_app = typer.Typer(
    help="Upload sales outcomes for the next run to load.", no_args_is_help=True
)
app.add_typer(outcomes_app, name="outcomes")


@outcomes_app.command("load")
def outcomes_load(
    file: Annotated[Path, typer.Argument(help="A CSV or JSON-lines file of outcomes.")],
    source: Annotated[
        str,
        typer.Option(
            help="The source system the file comes from; when rows name leads by "
            "source_lead_id, the leads' source (e.g. crm)."
        ),
    ] = "sales_upload",
    samples: Annotated[int, typer.Option(help="Sample rejected rows to show.")] = 5,
) -> None:
    """Check an outcomes file (columns in docs/data-contracts.md) and place it in the landing
    folder; the next run loads it, bad rows to quarantine with their reason."""
    from flows.sales.outcomes import OutcomeError, place_upload, upload_target
    from flows.sources.catalog import ENTITIES
    from flows.sources.check import check_files
    from flows.sources.mapping import SourceMapping

    settings = settings_or_fail()
    if not file.is_file():
        fail(f"{file} is not a file; give a CSV or JSON-lines file of outcomes")
    try:
        target = upload_target(file, source, settings.landing_dir)
    except OutcomeError as error:
        fail(str(error))
    mapping = replace(SourceMapping.by_convention(ENTITIES["outcomes"], source), files=("*",))
    check = check_files(file, mappings=[mapping], samples=samples)[0]
    if check.error:
        fail(f"{file}: {check.error}\nNothing was uploaded; fix the file and load it again.")
    reasons = ", ".join(f"{code} {count}" for code, count in sorted(check.reasons.items()))
    out.print(
        f"{file.name}: {check.rows_read:,} outcomes, {check.rows_loaded:,} to load, "
        f"{check.rows_quarantined:,} to quarantine" + (f" ({reasons})" if reasons else ""),
        highlight=False,
    )
    for sample in check.samples:
        out.print(f"  {sample}", highlight=False)
    if place_upload(file, target):
        out.print(f"Placed as {target}; the next `leadflow run` loads it.", highlight=False)
    else:
        out.print(f"Already uploaded as {target}; it loads once.", highlight=False)


report_app = typer.Typer(help="Reports on what LeadFlow handed over.", no_args_is_help=True)
app.add_typer(report_app, name="report")


@report_app.command("sla")
def report_sla(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the report as one JSON object.")
    ] = False,
) -> None:
    """Hand-offs per rep and segment: time to first touch, share within the SLA, overdue now."""
    from flows.sla import SlaNotBuiltError, read_sla_report

    settings = settings_or_fail()
    try:
        with reading_warehouse(settings) as connection:
            report = read_sla_report(connection)
    except SlaNotBuiltError as error:
        fail(str(error))
    if as_json:
        sys.stdout.write(json.dumps(report.to_dict()) + "\n")
    elif not report.rows:
        out.print("No hand-offs yet: nothing to measure against the SLA.")
    else:
        out.print(report.to_rich())
