"""Extract: load new inbox files into ``raw.*``, bad rows to quarantine, no file twice."""

from dataclasses import dataclass, field
from datetime import datetime

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.email.events import load_landed_events
from flows.sales.outcomes import seal_landed_outcomes
from flows.settings import load_settings
from flows.sources.api import fetch_to_landing
from flows.sources.inbox import (
    FileLoad,
    SourceFileError,
    file_sha256,
    load_file,
    parsing_connection,
    record_load_error,
    scan_inbox,
)
from flows.sources.mapping import load_mappings
from flows.warehouse import ensure_schema, open_warehouse


@dataclass(frozen=True)
class ExtractResult:
    files_loaded: int
    files_skipped: int
    rows_loaded: dict[str, int] = field(default_factory=dict)  # entity -> rows
    quarantine_reasons: dict[str, int] = field(default_factory=dict)
    file_errors: list[str] = field(default_factory=list)  # files that could not load, and why

    @property
    def rows_quarantined(self) -> int:
        return sum(self.quarantine_reasons.values())


@task(cache_policy=NO_CACHE)
def fetch_api_sources(as_of: datetime) -> dict[str, int]:
    """Page every API source changed since its watermark into the landing folder."""
    settings = load_settings()
    fetched: dict[str, int] = {}
    with open_warehouse(settings.warehouse) as connection:
        ensure_schema(connection)
        for mapping in load_mappings(settings.mapping_folders):
            if mapping.api is not None:
                result = fetch_to_landing(connection, mapping.api, settings.landing_dir, as_of)
                fetched[mapping.api.name] = result.records
    return fetched


@task(cache_policy=NO_CACHE)
def load_inbox(run_id: str, as_of: datetime) -> ExtractResult:
    """Load every new file, each in its own transaction: any error while loading a file is
    recorded in ops.load_errors and the file left for the next run; the others load."""
    settings = load_settings()
    loads: list[FileLoad] = []
    file_errors: list[str] = []
    with (
        open_warehouse(settings.warehouse) as connection,
        parsing_connection(connection) as parser,
    ):
        # Bounded memory whatever the file size: beyond the limit DuckDB spills to disk.
        parser.execute(f"set memory_limit = '{settings.extract_memory_limit}'")
        ensure_schema(connection)
        mappings = load_mappings(settings.mapping_folders)
        # The landing folder is where processes beside the pipeline (the email-event
        # receiver, sales-outcome uploads) drop closed files for the next run.
        seal_landed_outcomes(settings.sales_outcomes_landing_dir, settings.landing_dir)
        scans = [scan_inbox(connection, folder, mappings) for folder in settings.drop_folders]
        for scan in scans:
            for error in scan.unidentified:
                record_load_error(connection, error, file_sha256(error.path), run_id)
                file_errors.append(str(error))
        new_files = [inbox_file for scan in scans for inbox_file in scan.new]
        for index, inbox_file in enumerate(new_files):
            try:
                loads.append(
                    load_file(connection, inbox_file, as_of, run_id, parser=parser, index=index)
                )
            except SourceFileError as error:
                record_load_error(connection, error, inbox_file.sha256, run_id)
                file_errors.append(str(error))
        landed = load_landed_events(connection, settings.sendgrid_landing_dir, run_id)
    loaded = [load for load in loads if not load.skipped]
    rows_loaded: dict[str, int] = (
        {"email_provider_events": landed.events_loaded} if landed.files else {}
    )
    reasons: dict[str, int] = dict(landed.reasons)
    for load in loaded:
        entity = load.file.entity.name
        rows_loaded[entity] = rows_loaded.get(entity, 0) + load.rows_loaded
        for code, count in load.reasons.items():
            reasons[code] = reasons.get(code, 0) + count
    # Skipped: loaded by an earlier run or one running beside it, or a copy of a file loaded
    # earlier in this one.
    skipped = sum(len(scan.already_loaded) for scan in scans) + len(loads) - len(loaded)
    return ExtractResult(len(loaded) + landed.files, skipped, rows_loaded, reasons, file_errors)


@flow(name="extract")
def extract(run_id: str, as_of: datetime) -> ExtractResult:
    fetch_api_sources(as_of)
    return load_inbox(run_id, as_of)
