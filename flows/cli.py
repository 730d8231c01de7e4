"""The ``leadflow`` command: generate sample data, run the pipeline, inspect what it did."""

from __future__ import annotations

import atexit
import json
import os
import sys
import traceback
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from flows.settings import ConfigError, Settings, apply_prefect_defaults, load_settings

app = typer.Typer(
    help="LeadFlow: one shared definition of a lead, its score, its hand-off and its nurture.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
sources_app = typer.Typer(help="Check source files before they are loaded.", no_args_is_help=True)
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


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[bold red]Error:[/bold red] {message}", highlight=False)
    raise typer.Exit(code)


def settings_or_fail() -> Settings:
    try:
        return load_settings()
    except ConfigError as error:
        fail(str(error), code=2)


def prepare_prefect(settings: Settings, verbose: bool) -> None:
    """Environment for Prefect before it is imported: project-local state, a quiet terminal.

    Prefect keeps the full logs (visible in its UI); the terminal shows LeadFlow's summary.
    """
    apply_prefect_defaults(settings)
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    if not verbose:
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
        os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "WARNING")


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
    prepare_prefect(settings, verbose)
    from flows.pipeline import lead_pipeline

    if not as_json:
        err.print(f"[dim]Running lead_pipeline on {settings.warehouse_path} …[/dim]")
    try:
        summary = lead_pipeline(as_of=as_of)
    except user_errors() as error:
        fail(f"{error}\nNothing from this run was written; fix the problem and run again.")
    except Exception as error:
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
        raise typer.Exit(4)


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
    dataset = generate_dataset(settings.inbox_dir, leads=leads, seed=seed, as_of=midnight_utc())
    if not as_json:
        total = sum(dataset.files.values())
        err.print(f"[dim]Generated {total:,} sample rows into {dataset.out_dir}.[/dim]")
    run_pipeline(settings, as_json=as_json, verbose=verbose)
    if not as_json:
        out.print(
            f"\nEmails: {settings.outbox_dir}   Sales tasks: {settings.tasks_dir}   "
            f"Warehouse: {settings.warehouse_path}\n"
            "Next: `leadflow quarantine` shows rejected rows, `leadflow tasks` the sales queue."
        )


@app.command()
def serve(
    cron: Annotated[
        str, typer.Option(help="When to run, as a cron expression in UTC.")
    ] = "0 * * * *",
    verbose: VerboseOption = False,
) -> None:
    """Serve lead_pipeline on a schedule (needs a running `prefect server start`)."""
    settings = settings_or_fail()
    if not os.environ.get("PREFECT_API_URL"):
        fail(
            "schedules need a Prefect server, and the temporary one cannot fire them. Start one "
            "with `prefect server start` and set PREFECT_API_URL=http://127.0.0.1:4200/api, "
            "or deploy with prefect.yaml (see docs/operating.md)."
        )
    prepare_prefect(settings, verbose)
    from flows.pipeline import lead_pipeline

    # limit=1: DuckDB allows one writer process, so runs must never overlap.
    lead_pipeline.serve(name="leadflow-scheduled", cron=cron, limit=1)


quarantine_app = typer.Typer(
    help="Rows that were not loaded or acted on: list them, export them to fix, resubmit.",
    invoke_without_command=True,
)
app.add_typer(quarantine_app, name="quarantine")


@quarantine_app.callback()
def quarantine(
    context: typer.Context,
    limit: Annotated[int, typer.Option(help="Sample rows to show per reason.")] = 3,
) -> None:
    """Open quarantined rows, grouped by stage and reason (the default)."""
    if context.invoked_subcommand is not None:
        return
    from flows.warehouse import ensure_schema, open_warehouse

    settings = settings_or_fail()
    with open_warehouse(settings.warehouse_path) as connection:
        ensure_schema(connection)
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


@quarantine_app.command("export")
def quarantine_export(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the CSV files to fix.")],
    reason: Annotated[str | None, typer.Option(help="Only rows rejected for this reason.")] = None,
) -> None:
    """Write rejected source rows as CSV, one file per source file, ready to be corrected."""
    from flows.sources.resubmit import export_quarantined
    from flows.warehouse import ensure_schema, open_warehouse

    settings = settings_or_fail()
    with open_warehouse(settings.warehouse_path) as connection:
        ensure_schema(connection)
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
        with open_warehouse(settings.warehouse_path) as connection:
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


@app.command()
def tasks(
    rep: Annotated[str | None, typer.Option(help="Only this rep's tasks.")] = None,
    limit: Annotated[int, typer.Option(help="How many tasks to show.")] = 20,
) -> None:
    """Open sales tasks, soonest due first."""
    from flows.warehouse import ensure_schema, open_warehouse

    settings = settings_or_fail()
    with open_warehouse(settings.warehouse_path) as connection:
        ensure_schema(connection)
        rows = connection.execute(
            """
            select owner_rep_id, due_at, reason, title, why_now from ops.sales_tasks
            where status = 'open' and (? is null or owner_rep_id = ?)
            order by due_at, task_id limit ?
            """,
            [rep, rep, limit],
        ).fetchall()
    table = Table(title="Open sales tasks", title_justify="left")
    for column in ("rep", "due (UTC)", "reason", "task", "why now"):
        table.add_column(column)
    for owner, due_at, reason, title, why in rows:
        table.add_row(owner, f"{due_at:%Y-%m-%d %H:%M}", reason, title, why)
    out.print(table)


@sources_app.command("check")
def sources_check(
    path: Annotated[Path, typer.Argument(help="A file, or a folder of files, to check.")],
    mapping: Annotated[
        Path | None,
        typer.Option(help="Check against this mapping profile (default: the configured ones)."),
    ] = None,
    samples: Annotated[int, typer.Option(help="Sample rejected rows to show per file.")] = 3,
) -> None:
    """Dry run: what each file would load and quarantine, and why (nothing is written)."""
    from flows.sources.check import check_files
    from flows.sources.mapping import MappingError, load_mapping, load_mappings

    if not path.exists():
        fail(f"{path} does not exist; give a file or a folder of inbox files")
    try:
        if mapping:
            profile = load_mapping(mapping)
            # One profile given: it applies to every file checked, whatever the file's name.
            mappings = [replace(profile, files=("*",))]
        else:
            mappings = load_mappings(settings_or_fail().mapping_folders)
    except MappingError as error:
        fail(str(error))
    reports = check_files(path, mappings=mappings, samples=samples)
    if not reports:
        out.print(f"No CSV files in {path}.")
        return
    table = Table(title=f"Dry run of {path} (nothing written)", title_justify="left")
    for column in ("file", "entity", "rows", "would load", "would quarantine"):
        table.add_column(column, justify="left" if column in ("file", "entity") else "right")
    for report in reports:
        counts = (
            ("", "", "")
            if report.error
            else (report.rows_read, report.rows_loaded, report.rows_quarantined)
        )
        table.add_row(
            report.path.name, report.entity, *(f"{n:,}" if n != "" else "-" for n in counts)
        )
    out.print(table)
    for report in reports:
        if report.error:
            err.print(f"[red]{report.path.name}[/red]: {report.error}", highlight=False)
        elif report.reasons:
            reasons = ", ".join(f"{code} {n}" for code, n in sorted(report.reasons.items()))
            out.print(f"[bold]{report.path.name}[/bold]: {reasons}", highlight=False)
            for sample in report.samples:
                out.print(f"  {sample}", highlight=False)
    if any(report.error for report in reports):
        raise typer.Exit(1)


@app.command()
def docs() -> None:
    """Build the dbt docs (definitions, lineage) and the GX Data Docs; print where they are."""
    from flows.checks.gate import build_data_docs
    from flows.dbt_runner import DbtBuildError, generate_docs
    from flows.warehouse import ensure_schema, open_warehouse

    settings = settings_or_fail()
    with open_warehouse(settings.warehouse_path) as connection:
        ensure_schema(connection)  # the sources must exist for the catalog
    try:
        dbt_index = generate_docs(settings)
    except DbtBuildError as error:
        fail(str(error))
    out.print(f"dbt docs: {dbt_index}")
    out.print(f"GX Data Docs: {build_data_docs(settings.expectations_dir)}")


@templates_app.command("lint")
def templates_lint() -> None:
    """Check every track and template: front matter, variables, unsubscribe link, subject."""
    from flows.email.templates import TemplateError, lint_templates, load_sample_context

    settings = settings_or_fail()
    try:
        problems = lint_templates(
            settings.templates_dir, load_sample_context(settings.templates_dir)
        )
    except TemplateError as error:
        fail(str(error))
    for problem in problems:
        where = f"{problem.file}" + (f":{problem.line}" if problem.line else "")
        err.print(f"[red]{where}[/red]: {problem.message}", highlight=False)
    if problems:
        raise typer.Exit(1)
    out.print(f"All templates in {settings.templates_dir} are fine.")


@templates_app.command("preview")
def templates_preview(
    template: Annotated[
        str, typer.Argument(help="Path under templates/, e.g. tracks/warm_up/01-welcome.html")
    ],
    context: Annotated[
        Path | None, typer.Option(help="YAML context (default: templates/sample_context.yml).")
    ] = None,
    out_file: Annotated[Path | None, typer.Option("--out", help="Write the HTML here.")] = None,
) -> None:
    """Render one template with a sample context: subject, preheader and body."""
    from flows.email.templates import (
        TemplateError,
        load_context_file,
        load_sample_context,
        preview,
    )

    settings = settings_or_fail()
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


def main() -> None:
    """Entry point of the ``leadflow`` script.

    DuckDB's nanobind bindings print a screen of benign "leaked instance" warnings when the
    interpreter finalises after dbt and pandas have used it. So once the command is done and
    the exit handlers have run (they stop Prefect's temporary server), the process exits
    without finalising, which keeps the terminal to LeadFlow's own output.
    """
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
