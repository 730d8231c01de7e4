"""Reading the tracks marketing authors, and publishing them to ops.nurture_steps."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing

import duckdb
import pytest

from flows.email.tracks import (
    NurtureStep,
    TemplateError,
    Track,
    follow_up_policies,
    load_tracks,
    publish_tracks,
)
from flows.warehouse import connect

SHIPPED_TRACKS = {"warm_up", "education", "recycle_timing", "competitor_winback", "reengage"}


def load_error(templates_dir) -> str:
    with pytest.raises(TemplateError) as raised:
        load_tracks(templates_dir)
    return str(raised.value)


def test_the_shipped_tracks_load_with_three_consecutive_steps(shipped_templates):
    tracks = load_tracks(shipped_templates)
    assert set(tracks) == SHIPPED_TRACKS
    for name, track in tracks.items():
        assert track.name == name
        assert track.description
        assert [step.step for step in track.steps] == [1, 2, 3]
        for step in track.steps:
            assert step.track == name
            assert (shipped_templates / step.template).is_file()
            assert step.delay_days >= 0 and step.follow_up_due_days >= 0
            assert step.subject and step.preheader and step.follow_up_title


def test_a_step_carries_its_front_matter(shipped_templates):
    welcome = load_tracks(shipped_templates)["warm_up"].steps[0]
    assert welcome == NurtureStep(
        track="warm_up",
        step=1,
        template="tracks/warm_up/01-welcome.html",
        delay_days=0,
        subject="Welcome, {{ lead.first_name }}: what to expect from us",
        preheader="One useful idea per email, three emails in all, and no sales pitch in between.",
        follow_up_title="Research {{ lead.company }}: is {{ lead.first_name }} a fit for us?",
        follow_up_due_days=3,
        follow_up_when="clicked",  # warm_up/track.yml: only a click on the welcome
    )


def test_unsubscribe_group_is_read_when_set(templates_copy):
    track_file = templates_copy / "tracks/reengage/track.yml"
    track_file.write_text(track_file.read_text() + "unsubscribe_group: 4242\n")
    tracks = load_tracks(templates_copy)
    assert tracks["reengage"].unsubscribe_group == 4242
    assert tracks["warm_up"].unsubscribe_group is None


def test_a_missing_front_matter_key_names_file_key_and_fix(templates_copy, edit):
    edit(templates_copy / "tracks/warm_up/02-speed-to-lead.html", "delay_days: 4\n", "")
    message = load_error(templates_copy)
    assert "tracks/warm_up/02-speed-to-lead.html" in message
    assert "missing key `delay_days`" in message
    assert "add `delay_days: 4`" in message


def test_a_misspelt_key_suggests_the_right_one_with_its_line(templates_copy, edit):
    edit(templates_copy / "tracks/education/03-scoring-checklist.html", "preheader:", "preheadr:")
    message = load_error(templates_copy)
    assert (
        "tracks/education/03-scoring-checklist.html:5: unknown key `preheadr`: "
        "did you mean `preheader`?"
    ) in message


def test_a_wrongly_typed_value_says_what_it_must_be(templates_copy, edit):
    edit(
        templates_copy / "tracks/reengage/01-missed-each-other.html",
        "due_in_days: 2",
        "due_in_days: soon",
    )
    message = load_error(templates_copy)
    assert "tracks/reengage/01-missed-each-other.html:8:" in message
    assert "`follow_up.due_in_days` is 'soon'" in message
    assert "whole days" in message


def test_negative_delay_is_refused(templates_copy, edit):
    edit(
        templates_copy / "tracks/warm_up/03-customer-story.html", "delay_days: 7", "delay_days: -1"
    )
    assert "key `delay_days` is -1" in load_error(templates_copy)


def test_non_consecutive_steps_are_refused(templates_copy, edit):
    folder = templates_copy / "tracks/recycle_timing"
    (folder / "02-business-case.html").unlink()
    message = load_error(templates_copy)
    assert "tracks/recycle_timing: steps are 1, 3: number them 1 to 2" in message


def test_a_repeated_step_number_is_refused(templates_copy):
    folder = templates_copy / "tracks/reengage"
    copy = (folder / "02-answers-without-a-call.html").read_text()
    (folder / "02-another.html").write_text(copy)
    assert "tracks/reengage: steps are 1, 2, 2, 3" in load_error(templates_copy)


def test_file_name_and_step_must_agree(templates_copy, edit):
    edit(templates_copy / "tracks/warm_up/02-speed-to-lead.html", "step: 2", "step: 3")
    message = load_error(templates_copy)
    assert "tracks/warm_up/02-speed-to-lead.html:2: the file name says step 2" in message
    assert "`step: 3`" in message


def test_bad_yaml_names_the_file_and_line(templates_copy, edit):
    edit(
        templates_copy / "tracks/education/02-one-definition.html",
        "follow_up:\n  title:",
        "follow_up:\n title: x\n  title:",
    )
    message = load_error(templates_copy)
    assert "tracks/education/02-one-definition.html:8: invalid YAML" in message


def test_a_file_without_front_matter_is_refused(templates_copy):
    path = templates_copy / "tracks/warm_up/01-welcome.html"
    path.write_text("<p>Hello</p>\n")
    message = load_error(templates_copy)
    assert "tracks/warm_up/01-welcome.html:1: no front matter" in message


def test_unclosed_front_matter_is_refused(templates_copy):
    path = templates_copy / "tracks/warm_up/01-welcome.html"
    path.write_text(path.read_text().replace("---\n{% include", "{% include", 1))
    assert "the front matter is never closed" in load_error(templates_copy)


def test_track_yml_problems_are_named(templates_copy):
    track_file = templates_copy / "tracks/education/track.yml"
    track_file.write_text("name: educate\ndescription: Low fit leads.\n")
    message = load_error(templates_copy)
    assert "tracks/education/track.yml:1: `name: educate` differs from the folder name" in message
    assert "tracks/education/track.yml: missing key `exit_rules`" in message


def test_a_track_folder_without_track_yml_is_refused(templates_copy):
    (templates_copy / "tracks/education/track.yml").unlink()
    assert "tracks/education: no track.yml" in load_error(templates_copy)


def test_stray_files_in_a_track_are_named(templates_copy):
    (templates_copy / "tracks/warm_up/notes.txt").write_text("ideas")
    (templates_copy / "tracks/warm_up/.DS_Store").write_text("finder junk is ignored")
    message = load_error(templates_copy)
    assert "tracks/warm_up/notes.txt: not a step file" in message
    assert ".DS_Store" not in message


def test_every_problem_is_reported_at_once(templates_copy, edit):
    edit(templates_copy / "tracks/warm_up/01-welcome.html", "step: 1", "stp: 1")
    edit(templates_copy / "tracks/reengage/03-close-the-file.html", "due_in_days: 3", "")
    message = load_error(templates_copy)
    assert "tracks/warm_up/01-welcome.html" in message
    assert "tracks/reengage/03-close-the-file.html" in message


def nurture_steps(connection) -> list[tuple]:
    return connection.execute(
        "select track, step, template, delay_days, subject, follow_up_title, follow_up_due_days "
        "from ops.nurture_steps order by track, step"
    ).fetchall()


def test_publish_replaces_the_nurture_steps(warehouse, shipped_templates):
    tracks = load_tracks(shipped_templates)
    assert publish_tracks(warehouse, tracks) == 15
    rows = nurture_steps(warehouse)
    assert len(rows) == 15
    assert rows[0] == (
        "competitor_winback",
        1,
        "tracks/competitor_winback/01-rollout-check.html",
        30,
        "How is the rollout going, {{ lead.first_name }}?",
        "Note which product {{ lead.company }} chose and when its contract renews",
        7,
    )
    only_warm_up = {"warm_up": tracks["warm_up"]}
    assert publish_tracks(warehouse, only_warm_up) == 3
    assert {row[0] for row in nurture_steps(warehouse)} == {"warm_up"}


def test_a_failed_publish_leaves_the_previous_steps(warehouse, shipped_templates):
    tracks = load_tracks(shipped_templates)
    publish_tracks(warehouse, tracks)
    before = nurture_steps(warehouse)
    step = tracks["warm_up"].steps[0]
    # Two tracks claiming the same (track, step) break the primary key halfway through.
    clash = {**tracks, "clash": Track("clash", "duplicate", None, (step,))}
    with pytest.raises(duckdb.ConstraintException):
        publish_tracks(warehouse, clash)
    assert nurture_steps(warehouse) == before


def test_overlapping_runs_publish_the_steps_in_turns(postgres_database, shipped_templates):
    tracks = load_tracks(shipped_templates)
    start = threading.Barrier(4)

    def publish() -> int:
        connection = connect(postgres_database)
        try:
            start.wait()
            return sum(publish_tracks(connection, tracks) for _ in range(5))
        finally:
            connection.close()

    with ThreadPoolExecutor(4) as pool:
        published = [pool.submit(publish) for _ in range(4)]
    assert [run.result() for run in published] == [75] * 4
    with closing(connect(postgres_database)) as connection:
        assert len(nurture_steps(connection)) == 15


def set_follow_up_when(templates_dir, track: str, value: str) -> None:
    """Replace the track's follow_up_when block (the shipped files end with it)."""
    track_file = templates_dir / f"tracks/{track}/track.yml"
    text = track_file.read_text()
    track_file.write_text(text[: text.index("follow_up_when:")] + value)


def test_each_step_gets_its_follow_up_policy_and_unnamed_steps_the_default(templates_copy):
    set_follow_up_when(templates_copy, "reengage", "follow_up_when:\n  1: always\n  3: never\n")
    set_follow_up_when(templates_copy, "education", "follow_up_when: opened\n")
    set_follow_up_when(templates_copy, "competitor_winback", "")
    policies = follow_up_policies(load_tracks(templates_copy))
    assert [policies[("reengage", step)] for step in (1, 2, 3)] == ["always", "engaged", "never"]
    assert [policies[("education", step)] for step in (1, 2, 3)] == ["opened"] * 3
    assert [policies[("competitor_winback", step)] for step in (1, 2, 3)] == ["engaged"] * 3


def test_an_unknown_follow_up_policy_names_file_line_and_the_values_allowed(templates_copy):
    set_follow_up_when(templates_copy, "reengage", "follow_up_when:\n  1: sometimes\n")
    message = load_error(templates_copy)
    line = (templates_copy / "tracks/reengage/track.yml").read_text().split("\n").index(
        "follow_up_when:"
    ) + 1
    assert (
        f"tracks/reengage/track.yml:{line}: key `follow_up_when` is {{1: 'sometimes'}}" in message
    )
    assert "engaged, opened, clicked, always, never" in message
    assert "e.g. `follow_up_when: {1: never, 3: clicked}`" in message


def test_a_follow_up_policy_for_a_step_the_track_lacks_is_refused(templates_copy):
    set_follow_up_when(templates_copy, "warm_up", "follow_up_when: {2: never, 7: always}\n")
    message = load_error(templates_copy)
    assert "tracks/warm_up/track.yml" in message
    assert "`follow_up_when` names step 7 but the track has steps 1 to 3" in message


@pytest.mark.parametrize(
    "title", ["Call {{ lead.first_name }} today", "Reach Ann by phone", "Send Ann an e-mail"]
)
def test_a_follow_up_title_naming_a_channel_is_refused(templates_copy, edit, title):
    edit(
        templates_copy / "tracks/warm_up/02-speed-to-lead.html",
        '"Connect with {{ lead.first_name }} at {{ lead.company }} on LinkedIn"',
        f'"{title}"',
    )
    message = load_error(templates_copy)
    assert "tracks/warm_up/02-speed-to-lead.html:7: key `follow_up.title`" in message
    assert "without a channel" in message
