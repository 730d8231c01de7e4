import csv
from datetime import datetime
from pathlib import Path

import pytest

from bench.events import NEW_EVENT_ID_PREFIX, AppendError, append_new_events

AFTER = datetime(2026, 3, 2)
UNTIL = datetime(2026, 3, 2, 1)
HEADER = ["event_id", "email", "event_type", "occurred_at", "campaign", "url", "message_key"]


@pytest.fixture
def events_file(tmp_path: Path) -> Path:
    path = tmp_path / "events__marketing_automation.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        for number in range(20_000):
            writer.writerow(
                [f"evt_{number:010d}", f"p{number % 997}@example.com", "page_view",
                 "2026-01-05T10:00:00", "", "https://x.example/a,b", ""]
            )  # fmt: skip
        writer.writerow(["evt_bad", "p1@example.com", "page_view", "2026-02-30", "", "", ""])
    return path


def read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_about_the_share_of_rows_with_new_ids_inside_the_window(events_file, tmp_path):
    new_file = tmp_path / "new.csv"
    written = append_new_events(events_file, new_file, share=0.01, seed=7, after=AFTER, until=UNTIL)
    rows = read(new_file)
    assert len(rows) == written
    assert 150 <= written <= 250  # 1% of 20,001 rows, drawn by hash
    assert list(rows[0]) == HEADER
    assert all(row["event_id"].startswith(NEW_EVENT_ID_PREFIX) for row in rows)
    assert len({row["event_id"] for row in rows}) == written
    moments = [datetime.fromisoformat(row["occurred_at"]) for row in rows]
    assert all(AFTER < moment <= UNTIL for moment in moments)
    assert moments == sorted(moments)
    assert {row["url"] for row in rows} == {"https://x.example/a,b"}


def test_same_seed_same_file_other_seed_other_rows(events_file, tmp_path):
    paths = [tmp_path / f"{name}.csv" for name in ("a", "b", "c")]
    for path, seed in zip(paths, (7, 7, 8), strict=True):
        append_new_events(events_file, path, share=0.01, seed=seed, after=AFTER, until=UNTIL)
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert paths[0].read_bytes() != paths[2].read_bytes()


@pytest.mark.parametrize("share", [0, -0.1, 1.5])
def test_share_outside_zero_to_one_is_refused(events_file, tmp_path, share):
    with pytest.raises(AppendError, match="share"):
        append_new_events(
            events_file, tmp_path / "new.csv", share=share, seed=1, after=AFTER, until=UNTIL
        )


def test_empty_window_is_refused(events_file, tmp_path):
    with pytest.raises(AppendError, match="later"):
        append_new_events(
            events_file, tmp_path / "new.csv", share=0.01, seed=1, after=UNTIL, until=AFTER
        )


def test_file_without_event_ids_is_named_in_the_error(tmp_path):
    path = tmp_path / "events__x.csv"
    path.write_text("email,event_type\na@b.co,page_view\n")
    with pytest.raises(AppendError, match=r"events__x\.csv"):
        append_new_events(path, tmp_path / "new.csv", share=0.5, seed=1, after=AFTER, until=UNTIL)
