"""REST API sources: page through an endpoint into the landing folder, incrementally.

An API source is declared in a mapping profile's ``api:`` section (docs/sources.md). Fetching
writes the records as one JSON-lines file into the landing folder, named so that the same
profile maps it; the normal extract then loads it like any other file. So an API source gets
the same validation, quarantine and load ledger as a file drop, and a crash after the fetch
loses nothing: the file waits in the landing folder for the next run.

The watermark (the largest ``updated_at`` among the records that *loaded*) is kept per source
in ``ops.api_watermarks`` and sent as a query parameter, so each run asks only for what
changed. It moves in the load's transaction, not at the fetch: a quarantined record (say one
updated in 9999) never moves it past records still to come.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx

from flows.warehouse import Connection

RETRY_STATUSES = {429, 500, 502, 503, 504}


class ApiSourceError(Exception):
    """The API could not be read; names the source, the URL and what to do."""


@dataclass(frozen=True)
class ApiSource:
    name: str  # the profile's source name
    entity: str
    url: str
    token_env: str | None = None  # environment variable holding the bearer token
    records_field: str = "results"  # where the records are in each page (dotted path)
    cursor_field: str | None = None  # dotted path of the next cursor in a page; None: pages
    cursor_param: str = "after"
    page_param: str = "page"
    page_size_param: str | None = "limit"
    page_size: int = 100
    updated_since_param: str | None = "updated_since"
    updated_at_field: str = "updated_at"
    max_pages: int = 10_000
    max_attempts: int = 5

    def landing_file(self, folder: Path, fetched_at: datetime) -> Path:
        return folder / f"{self.entity}__{self.name}__api-{fetched_at:%Y%m%dT%H%M%S}.jsonl"


@dataclass(frozen=True)
class FetchResult:
    source: str
    records: int
    pages: int
    file: Path | None
    watermark: datetime | None  # what was asked for: records changed after it


def dotted(document: Any, path: str) -> Any:
    for part in path.split("."):
        document = document.get(part) if isinstance(document, dict) else None
    return document


def retry_delay(response: httpx.Response, attempt: int) -> float:
    """Seconds to wait: the server's Retry-After (seconds or a date) or exponential backoff."""
    header = response.headers.get("Retry-After")
    if header:
        if header.strip().isdigit():
            return float(header)
        try:
            return max(0.0, parsedate_to_datetime(header).timestamp() - time.time())
        except (TypeError, ValueError):
            pass
    return min(60.0, 0.5 * 2**attempt)


def _get(
    client: httpx.Client,
    source: ApiSource,
    params: dict[str, Any],
    sleep: Callable[[float], None],
) -> Any:
    for attempt in range(source.max_attempts):
        try:
            response = client.get(source.url, params=params)
        except httpx.TransportError as error:
            if attempt + 1 == source.max_attempts:
                raise ApiSourceError(
                    f"API source {source.name}: {source.url} unreachable ({error}); the next "
                    "run tries again from the same watermark"
                ) from None
            sleep(min(60.0, 0.5 * 2**attempt))
            continue
        if response.status_code in RETRY_STATUSES and attempt + 1 < source.max_attempts:
            sleep(retry_delay(response, attempt))
            continue
        if response.status_code in (401, 403):
            raise ApiSourceError(
                f"API source {source.name}: {source.url} refused the token "
                f"(HTTP {response.status_code}); check {source.token_env or 'the token'}"
            )
        if response.is_error:
            raise ApiSourceError(
                f"API source {source.name}: {source.url} answered HTTP {response.status_code} "
                f"after {attempt + 1} attempt(s); the next run tries again from the same "
                "watermark"
            )
        try:
            return response.json()
        except ValueError:
            raise ApiSourceError(
                f"API source {source.name}: {source.url} did not answer JSON"
            ) from None
    raise AssertionError("unreachable: the loop returns or raises")


def read_watermark(connection: Connection, source: str) -> datetime | None:
    row = connection.execute(
        "select watermark from ops.api_watermarks where source = ?", [source]
    ).fetchall()
    return row[0][0] if row else None


def advance_watermark(
    connection: Connection, source: str, entity: str, column: str, load_id: str
) -> None:
    """Move a source's watermark to the newest ``column`` among the rows of one load into
    ``raw.<entity>`` (validated, so never in the future); it never moves back."""
    connection.execute(
        f"""
        insert into ops.api_watermarks
        select ?, max({column}), now()::timestamp from raw.{entity} where load_id = ?
        having max({column}) is not null
        on conflict (source) do update set
            watermark = greatest(ops.api_watermarks.watermark, excluded.watermark),
            fetched_at = excluded.fetched_at
        """,
        [source, load_id],
    )


def fetch_to_landing(
    connection: Connection,
    source: ApiSource,
    landing_dir: Path,
    fetched_at: datetime,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> FetchResult:
    """Fetch every page changed since the watermark into one landing file."""
    watermark = read_watermark(connection, source.name)
    headers = {"Accept": "application/json"}
    if source.token_env:
        token = os.environ.get(source.token_env)
        if not token:
            raise ApiSourceError(
                f"API source {source.name}: set the environment variable {source.token_env} "
                "to the API token (it is read from the environment only, never from files)"
            )
        headers["Authorization"] = f"Bearer {token}"
    params: dict[str, Any] = {}
    if source.updated_since_param and watermark:
        params[source.updated_since_param] = watermark.isoformat()
    if source.page_size_param:
        params[source.page_size_param] = source.page_size
    landing_dir.mkdir(parents=True, exist_ok=True)
    target = source.landing_file(landing_dir, fetched_at)
    temporary = target.with_name(f".{target.name}.tmp")
    records = pages = 0
    http = httpx.Client(headers=headers, timeout=30.0)
    try:
        with temporary.open("w", encoding="utf-8") as out:
            page_number = 1
            while pages < source.max_pages:
                page_params = dict(params)
                if source.cursor_field is None:
                    page_params[source.page_param] = page_number
                document = _get(http, source, page_params, sleep)
                pages += 1
                batch = dotted(document, source.records_field) or []
                for record in batch:
                    out.write(json.dumps(record, separators=(",", ":")) + "\n")
                records += len(batch)
                if source.cursor_field is not None:
                    cursor = dotted(document, source.cursor_field)
                    if not cursor:
                        break
                    params[source.cursor_param] = cursor
                elif not batch:
                    break
                page_number += 1
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    finally:
        http.close()
    if records == 0:
        temporary.unlink()
        return FetchResult(source.name, 0, pages, None, watermark)
    os.replace(temporary, target)
    # The watermark moves when this file loads (advance_watermark): until then, a next fetch
    # asks for the same records again, and the load ledger and dbt's dedupe absorb them.
    return FetchResult(source.name, records, pages, target, watermark)
