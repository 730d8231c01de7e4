"""The REST API source against a local HTTP test double on 127.0.0.1."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from flows.sources.api import ApiSource, ApiSourceError, fetch_to_landing, read_watermark
from flows.sources.inbox import commit_staged, load_file, scan_inbox, stage_file
from flows.sources.mapping import MappingError, SourceMapping, load_mapping

TOKEN = "s3cret-token"
LEADS = [
    {
        "id": f"c{n}",
        "email": f"lead{n}@example.com",
        "created": "2026-10-01T09:00:00Z",
        "updated": f"2026-11-{10 + n:02d}T09:00:00Z",
    }
    for n in range(5)
]


class CrmDouble(BaseHTTPRequestHandler):
    """Cursor-paginated contacts, 2 per page; answers 429 then 503 once before serving."""

    requests: list[dict[str, list[str]]]
    failures: list[int]

    def do_GET(self) -> None:
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self._reply(401, {"error": "unauthorized"})
            return
        if self.failures:
            status = self.failures.pop(0)
            self._reply(status, {"error": "busy"}, {"Retry-After": "0"} if status == 429 else {})
            return
        query = parse_qs(urlparse(self.path).query)
        self.requests.append(query)
        since = query.get("updated_since", [""])[0]
        matching = [lead for lead in LEADS if lead["updated"].removesuffix("Z") > since]
        start = int(query.get("after", ["0"])[0])
        page = matching[start : start + 2]
        more = start + 2 < len(matching)
        self._reply(200, {"results": page, "paging": {"next": str(start + 2) if more else None}})

    def _reply(self, status: int, body: dict, headers: dict[str, str] | None = None) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:  # keep test output clean
        pass


@pytest.fixture
def crm() -> Iterator[type[CrmDouble]]:
    handler = type("Handler", (CrmDouble,), {"requests": [], "failures": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    handler.url = f"http://127.0.0.1:{server.server_port}/contacts"  # type: ignore[attr-defined]
    yield handler
    server.shutdown()
    server.server_close()


def source(url: str) -> ApiSource:
    return ApiSource(
        name="crm_api",
        entity="leads",
        url=url,
        token_env="CRM_TOKEN",
        cursor_field="paging.next",
        updated_at_field="updated",
        page_size=2,
    )


def crm_profile(folder: Path, url: str) -> SourceMapping:
    path = folder / "crm_api.yml"
    path.write_text(
        f"""
source: crm_api
entity: leads
files: []
api: {{url: "{url}", token_env: CRM_TOKEN, cursor_field: paging.next, updated_at_field: updated,
       page_size: 2}}
columns: {{source_lead_id: id, email: email, created_at: created, updated_at: updated}}
"""
    )
    return load_mapping(path)


def load_landed(warehouse, landing: Path, profile: SourceMapping, as_of: datetime) -> list:
    return [
        load_file(warehouse, inbox_file, as_of, "run-1", index=index)
        for index, inbox_file in enumerate(scan_inbox(warehouse, landing, [profile]).new)
    ]


def test_pages_retries_and_watermark(warehouse, tmp_path, crm, monkeypatch):
    monkeypatch.setenv("CRM_TOKEN", TOKEN)
    crm.failures.extend([429, 503])
    waits: list[float] = []
    profile, landing = crm_profile(tmp_path, crm.url), tmp_path / "landing"
    assert profile.api is not None
    first = fetch_to_landing(
        warehouse, profile.api, landing, datetime(2026, 11, 20), sleep=waits.append
    )
    assert (first.records, first.pages) == (5, 3)
    assert waits[0] == 0.0  # Retry-After honoured; the 503 backs off exponentially
    assert len(waits) == 2
    lines = first.file.read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == ["c0", "c1", "c2", "c3", "c4"]
    assert first.file.name == "leads__crm_api__api-20261120T000000.jsonl"
    # Fetched is not loaded: the watermark moves with the load, over the rows it loaded.
    assert read_watermark(warehouse, "crm_api") is None
    load_landed(warehouse, landing, profile, datetime(2026, 11, 20))
    assert read_watermark(warehouse, "crm_api") == datetime(2026, 11, 14, 9)

    LEADS.append(
        {
            "id": "c9",
            "email": "new@example.com",
            "created": "2026-11-15T00:00:00Z",
            "updated": "2026-11-15T08:00:00Z",
        }
    )
    try:
        second = fetch_to_landing(
            warehouse, profile.api, landing, datetime(2026, 11, 21), sleep=waits.append
        )
    finally:
        LEADS.pop()
    assert crm.requests[-1]["updated_since"] == ["2026-11-14T09:00:00"]
    assert second.records == 1
    load_landed(warehouse, landing, profile, datetime(2026, 11, 21))
    assert read_watermark(warehouse, "crm_api") == datetime(2026, 11, 15, 8)


def test_the_watermark_advances_only_over_records_that_loaded(
    warehouse, tmp_path, crm, monkeypatch
):
    monkeypatch.setenv("CRM_TOKEN", TOKEN)
    profile, landing = crm_profile(tmp_path, crm.url), tmp_path / "landing"
    assert profile.api is not None
    far_future = {
        "id": "c7",
        "email": "late@example.com",
        "created": "2026-10-01T09:00:00Z",
        "updated": "9999-12-31T00:00:00Z",
    }
    broken = {
        "id": "c8",
        "email": "not-an-email",
        "created": "2026-10-01T09:00:00Z",
        "updated": "2026-11-19T00:00:00Z",
    }
    LEADS.extend([far_future, broken])
    try:
        fetch_to_landing(warehouse, profile.api, landing, datetime(2026, 11, 20))
    finally:
        del LEADS[-2:]
    (load,) = load_landed(warehouse, landing, profile, datetime(2026, 11, 20))
    assert load.reasons == {"impossible_date": 1, "malformed_email": 1}
    # Neither the year-9999 record nor the rejected one moves it: only what loaded.
    assert read_watermark(warehouse, "crm_api") == datetime(2026, 11, 14, 9)


def test_an_api_profile_must_map_its_updated_at_field_to_a_timestamp(tmp_path):
    path = tmp_path / "crm_api.yml"
    path.write_text(
        """
source: crm_api
entity: leads
files: []
api: {url: "http://127.0.0.1/contacts", updated_at_field: modified}
columns: {source_lead_id: id, email: email, created_at: created, updated_at: updated}
"""
    )
    with pytest.raises(MappingError, match=r"`api.updated_at_field` \(modified\) must be"):
        load_mapping(path)


def test_nothing_new_writes_no_file(warehouse, tmp_path, crm, monkeypatch):
    monkeypatch.setenv("CRM_TOKEN", TOKEN)
    profile, landing = crm_profile(tmp_path, crm.url), tmp_path / "landing"
    assert profile.api is not None
    fetch_to_landing(warehouse, profile.api, landing, datetime(2026, 11, 20))
    load_landed(warehouse, landing, profile, datetime(2026, 11, 20))
    again = fetch_to_landing(warehouse, profile.api, landing, datetime(2026, 11, 21))
    assert (again.records, again.file) == (0, None)
    assert len(list(landing.glob("*.jsonl"))) == 1


def test_a_missing_or_refused_token_says_which_variable(warehouse, tmp_path, crm, monkeypatch):
    monkeypatch.delenv("CRM_TOKEN", raising=False)
    with pytest.raises(ApiSourceError, match="set the environment variable CRM_TOKEN"):
        fetch_to_landing(warehouse, source(crm.url), tmp_path, datetime(2026, 11, 20))
    monkeypatch.setenv("CRM_TOKEN", "wrong")
    with pytest.raises(
        ApiSourceError, match=r"refused the token \(HTTP 401\); check CRM_TOKEN"
    ) as raised:
        fetch_to_landing(warehouse, source(crm.url), tmp_path, datetime(2026, 11, 20))
    assert "wrong" not in str(raised.value)  # the secret is never in a message
    assert list(tmp_path.iterdir()) == []  # no partial file left behind


def test_persistent_server_errors_give_up_without_moving_the_watermark(
    warehouse, tmp_path, crm, monkeypatch
):
    monkeypatch.setenv("CRM_TOKEN", TOKEN)
    crm.failures.extend([503] * 5)
    with pytest.raises(ApiSourceError, match="answered HTTP 503 after 5 attempt"):
        fetch_to_landing(
            warehouse, source(crm.url), tmp_path, datetime(2026, 11, 20), sleep=lambda _: None
        )
    assert read_watermark(warehouse, "crm_api") is None
    assert list(tmp_path.iterdir()) == []


def test_a_profile_with_an_api_section_maps_what_it_fetched(
    warehouse, parser, tmp_path, crm, monkeypatch
):
    monkeypatch.setenv("CRM_TOKEN", TOKEN)
    profile_path = tmp_path / "crm_api.yml"
    profile_path.write_text(
        f"""
source: crm_api
entity: leads
files: ["crm-api-export-*.jsonl"]
api:
  url: {crm.url}
  token_env: CRM_TOKEN
  cursor_field: paging.next
  updated_at_field: updated
columns: {{source_lead_id: id, email: email, created_at: created, updated_at: updated}}
"""
    )
    profile = load_mapping(profile_path)
    landing = tmp_path / "landing"
    fetch_to_landing(warehouse, profile.api, landing, datetime(2026, 11, 20))
    scan = scan_inbox(warehouse, landing, [profile])
    staged = [
        stage_file(warehouse, parser, f, datetime(2026, 11, 20), i) for i, f in enumerate(scan.new)
    ]
    commit_staged(warehouse, staged, "run-1")
    assert warehouse.execute(
        "select count(*), min(source), max(updated_at) from raw.leads"
    ).fetchone() == (5, "crm_api", datetime(2026, 11, 14, 9))
