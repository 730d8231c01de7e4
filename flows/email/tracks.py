"""Nurture tracks as marketing authors them in ``templates/tracks/<track>/``: reading, publishing.

Each track folder holds a ``track.yml`` (who enters, why, when they leave) and one
``NN-slug.html`` file per email: YAML front matter between ``---`` lines (step, delay,
subject, preheader, the sales follow-up task) and then the Jinja body. Reading collects every
problem instead of stopping at the first, so ``leadflow templates lint`` can list them all and
``load_tracks`` can refuse to run with all of them in one message.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from flows.sales.tasks import DEFAULT_FOLLOW_UP_POLICY, FOLLOW_UP_POLICIES
from flows.warehouse import Connection, one_writer_at_a_time

if TYPE_CHECKING:
    pass

TRACKS_FOLDER = "tracks"
TRACK_FILE = "track.yml"
# The lock under which overlapping runs publish the steps (publish_tracks).
NURTURE_STEPS_LOCK = "nurture-steps"
STEP_FILE_NAME = re.compile(r"(?P<number>\d{2})-[a-z0-9][a-z0-9_-]*\.html")
FRONT_MATTER_FENCE = "---"
CHANNEL_WORDS = re.compile(r"\b(call|phone|e-?mail)\b", re.IGNORECASE)


@dataclass(frozen=True)
class LintProblem:
    """One thing wrong: the file (relative to ``templates/``), the line, and the fix."""

    file: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.message}"


class TemplateError(Exception):
    """Templates that cannot be used; the message names each file, key and fix."""

    def __init__(self, message: str, problems: Sequence[LintProblem] = ()) -> None:
        super().__init__(message)
        self.problems = tuple(problems)

    @classmethod
    def from_problems(cls, *problems: LintProblem) -> TemplateError:
        return cls("\n".join(str(problem) for problem in problems), problems)


@dataclass(frozen=True)
class NurtureStep:
    track: str
    step: int
    template: str  # relative to templates/, e.g. "tracks/warm_up/01-welcome.html"
    delay_days: int
    subject: str
    preheader: str
    follow_up_title: str
    follow_up_due_days: int
    follow_up_when: str = DEFAULT_FOLLOW_UP_POLICY  # a FOLLOW_UP_POLICIES key, from track.yml


@dataclass(frozen=True)
class Track:
    name: str
    description: str
    unsubscribe_group: int | None
    steps: tuple[NurtureStep, ...]


@dataclass(frozen=True)
class _Key:
    """What a YAML key must hold, in the words the error message uses, with an example line."""

    is_valid: Callable[[Any], bool]
    expected: str
    example: str
    required: bool = True


def _is_whole_number(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _is_policy(value: Any) -> bool:
    return isinstance(value, str) and value in FOLLOW_UP_POLICIES


TRACK_KEYS: dict[str, _Key] = {
    "name": _Key(_is_text, "the track's folder name", "name: warm_up"),
    "description": _Key(
        _is_text, "a sentence saying who enters this track and why", "description: Leads who..."
    ),
    "unsubscribe_group": _Key(
        lambda value: value is None or (_is_whole_number(value) and value > 0),
        "the SendGrid unsubscribe group id, a whole number",
        "unsubscribe_group: 12345",
        required=False,
    ),
    "exit_rules": _Key(
        lambda value: isinstance(value, list) and bool(value) and all(map(_is_text, value)),
        "a list of plain-words rules for leaving the track",
        "exit_rules: [Re-qualifies as MQL, Unsubscribes]",
    ),
    "follow_up_when": _Key(
        lambda value: (
            _is_policy(value)
            or (
                isinstance(value, dict)
                and bool(value)
                and all(_is_whole_number(step) and step >= 1 for step in value)
                and all(map(_is_policy, value.values()))
            )
        ),
        "when an email makes a sales follow-up task: one of "
        + ", ".join(FOLLOW_UP_POLICIES)
        + " for every step, or step numbers each with one of them",
        "follow_up_when: {1: never, 3: clicked}",
        required=False,
    ),
}

STEP_KEYS: dict[str, _Key] = {
    "step": _Key(
        lambda value: _is_whole_number(value) and value >= 1,
        "the step number, 1 for the track's first email",
        "step: 1",
    ),
    "delay_days": _Key(
        lambda value: _is_whole_number(value) and value >= 0,
        "whole days after entering the track (step 1) or after the previous step, 0 or more",
        "delay_days: 4",
    ),
    "subject": _Key(_is_text, "the subject line", 'subject: "A quick idea for {{ lead.company }}"'),
    "preheader": _Key(
        _is_text, "the preview text shown after the subject", "preheader: Three minutes to read"
    ),
    "follow_up": _Key(
        lambda value: isinstance(value, dict),
        "the sales task created after this email, with title and due_in_days",
        "follow_up: {title: 'Call {{ lead.first_name }}', due_in_days: 2}",
    ),
}

FOLLOW_UP_KEYS: dict[str, _Key] = {
    "title": _Key(
        lambda value: _is_text(value) and not CHANNEL_WORDS.search(value),
        "what sales should do, without a channel (no call, phone or email: the task adds the "
        "ways the lead can be reached, so no one is asked to call a lead without a phone)",
        "title: Talk to {{ lead.first_name }} about the checklist",
    ),
    "due_in_days": _Key(
        lambda value: _is_whole_number(value) and value >= 0,
        "whole days after the email is sent, 0 or more",
        "due_in_days: 2",
    ),
}


def split_front_matter(text: str, file: str) -> tuple[str, str]:
    """The front matter YAML and the body of a step file.

    The body keeps a blank line for every front matter line, so a Jinja error's line number is
    the line a marketer sees in their editor.
    """
    lines = text.replace("\r\n", "\n").split("\n")
    if lines[0].strip() != FRONT_MATTER_FENCE:
        raise TemplateError.from_problems(
            LintProblem(
                file,
                1,
                "no front matter: the file must start with a line `---`, then step, delay_days, "
                "subject, preheader and follow_up, then another `---` line (see README.md)",
            )
        )
    for index, line in enumerate(lines[1:], start=1):
        if line.strip() == FRONT_MATTER_FENCE:
            # index + 1 lines (both fences included) precede the body
            return "\n".join(lines[1:index]), "\n" * (index + 1) + "\n".join(lines[index + 1 :])
    raise TemplateError.from_problems(
        LintProblem(file, 1, "the front matter is never closed: add a line `---` after it")
    )


def _key_line(lines: Sequence[str], key: str, *, first_line: int) -> int | None:
    """File line of ``key:``, given the file line that ``lines[0]`` is on."""
    pattern = re.compile(rf"\s*{re.escape(key)}\s*:")
    for offset, line in enumerate(lines):
        if pattern.match(line):
            return offset + first_line
    return None


def _check_keys(
    data: Mapping[str, Any],
    keys: Mapping[str, _Key],
    file: str,
    lines: Sequence[str],
    *,
    first_line: int,
    parent: str = "",
) -> list[LintProblem]:
    problems = []
    for key in data:
        if key not in keys:
            close = difflib.get_close_matches(str(key), keys, n=1)
            hint = f"did you mean `{close[0]}`?" if close else f"allowed: {', '.join(keys)}"
            problems.append(
                LintProblem(
                    file,
                    _key_line(lines, str(key), first_line=first_line),
                    f"unknown key `{parent}{key}`: {hint}",
                )
            )
    for key, spec in keys.items():
        if key not in data:
            if spec.required:
                problems.append(
                    LintProblem(
                        file,
                        None,
                        f"missing key `{parent}{key}`: add `{spec.example}` ({spec.expected})",
                    )
                )
        elif not spec.is_valid(data[key]):
            problems.append(
                LintProblem(
                    file,
                    _key_line(lines, key, first_line=first_line),
                    f"key `{parent}{key}` is {data[key]!r}: it must be {spec.expected}, "
                    f"e.g. `{spec.example}`",
                )
            )
    return problems


def _parse_yaml(text: str, file: str, *, first_line: int) -> tuple[Any, list[LintProblem]]:
    try:
        return yaml.safe_load(text), []
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = mark.line + first_line if mark is not None else None
        reason = getattr(error, "problem", None) or str(error)
        return None, [
            LintProblem(
                file,
                line,
                f"invalid YAML ({reason}): check the indentation and put text containing "
                "`:` or `{{` in quotes",
            )
        ]


def read_step_file(templates_dir: Path, path: Path) -> tuple[NurtureStep | None, list[LintProblem]]:
    """One step file's front matter as a NurtureStep, or the problems that prevent it."""
    file = path.relative_to(templates_dir).as_posix()
    try:
        front_matter, _ = split_front_matter(path.read_text(encoding="utf-8-sig"), file)
    except TemplateError as error:
        return None, list(error.problems)
    data, problems = _parse_yaml(front_matter, file, first_line=2)
    if problems:
        return None, problems
    if not isinstance(data, dict):
        return None, [LintProblem(file, 2, "the front matter must be `key: value` lines")]
    lines = front_matter.split("\n")
    problems = _check_keys(data, STEP_KEYS, file, lines, first_line=2)
    follow_up = data.get("follow_up")
    if isinstance(follow_up, dict):
        problems += _check_keys(
            follow_up, FOLLOW_UP_KEYS, file, lines, first_line=2, parent="follow_up."
        )
    if problems:
        return None, problems
    number = STEP_FILE_NAME.fullmatch(path.name)
    if number and int(number["number"]) != data["step"]:
        return None, [
            LintProblem(
                file,
                _key_line(lines, "step", first_line=2),
                f"the file name says step {int(number['number'])} but the front matter says "
                f"`step: {data['step']}`: make them agree",
            )
        ]
    return NurtureStep(
        track=path.parent.name,
        step=data["step"],
        template=file,
        delay_days=data["delay_days"],
        subject=data["subject"],
        preheader=data["preheader"],
        follow_up_title=data["follow_up"]["title"],
        follow_up_due_days=data["follow_up"]["due_in_days"],
    ), []


@dataclass(frozen=True)
class TracksReading:
    """What reading ``tracks/`` found: the usable tracks, every step file that parsed (lint
    renders those even when their track has other problems), and all the problems."""

    tracks: dict[str, Track]
    steps: list[NurtureStep]
    problems: list[LintProblem]


def _read_track(
    templates_dir: Path, folder: Path
) -> tuple[Track | None, list[NurtureStep], list[LintProblem]]:
    track_file = folder / TRACK_FILE
    relative_folder = folder.relative_to(templates_dir).as_posix()
    file = f"{relative_folder}/{TRACK_FILE}"
    problems: list[LintProblem] = []
    settings: Any = None
    if not track_file.is_file():
        problems.append(
            LintProblem(
                relative_folder,
                None,
                f"no {TRACK_FILE}: add one with name, description and exit_rules (see README.md)",
            )
        )
    else:
        text = track_file.read_text(encoding="utf-8-sig")
        settings, yaml_problems = _parse_yaml(text, file, first_line=1)
        problems += yaml_problems
        if not yaml_problems and not isinstance(settings, dict):
            problems.append(LintProblem(file, 1, "the file must be `key: value` lines"))
        elif isinstance(settings, dict):
            lines = text.split("\n")
            problems += _check_keys(settings, TRACK_KEYS, file, lines, first_line=1)
            if _is_text(settings.get("name")) and settings["name"] != folder.name:
                problems.append(
                    LintProblem(
                        file,
                        _key_line(lines, "name", first_line=1),
                        f"`name: {settings['name']}` differs from the folder name "
                        f"`{folder.name}`: make them the same",
                    )
                )

    steps: list[NurtureStep] = []
    numbers: list[int] = []  # from the file names, so a file with broken front matter counts
    for path in sorted(folder.iterdir()):
        if path.name == TRACK_FILE or path.name.startswith("."):
            continue
        name = STEP_FILE_NAME.fullmatch(path.name)
        if not (path.is_file() and name):
            problems.append(
                LintProblem(
                    path.relative_to(templates_dir).as_posix(),
                    None,
                    "not a step file: name email files like `01-welcome.html` (two-digit "
                    "step number, dash, lower-case words)",
                )
            )
            continue
        numbers.append(int(name["number"]))
        step, step_problems = read_step_file(templates_dir, path)
        problems += step_problems
        if step is not None:
            steps.append(step)

    if not numbers:
        problems.append(
            LintProblem(relative_folder, None, "no emails: add a step file like `01-welcome.html`")
        )
    elif sorted(numbers) != list(range(1, len(numbers) + 1)):
        problems.append(
            LintProblem(
                relative_folder,
                None,
                f"steps are {', '.join(map(str, sorted(numbers)))}: number them 1 to "
                f"{len(numbers)} with no gaps or repeats (file names and `step:` both)",
            )
        )
    if isinstance(settings, dict) and isinstance(settings.get("follow_up_when"), dict):
        unknown = sorted(set(settings["follow_up_when"]) - set(numbers))
        if unknown and numbers:
            problems.append(
                LintProblem(
                    file,
                    _key_line(text.split("\n"), "follow_up_when", first_line=1),
                    f"`follow_up_when` names step {', '.join(map(str, unknown))} but the track "
                    f"has steps 1 to {max(numbers)}: remove it or add the step file",
                )
            )
    if problems:
        return None, steps, problems
    assert isinstance(settings, dict)
    steps.sort(key=lambda step: step.step)
    track = Track(
        name=folder.name,
        description=settings["description"].strip(),
        unsubscribe_group=settings.get("unsubscribe_group"),
        steps=tuple(
            replace(step, follow_up_when=_step_policy(settings.get("follow_up_when"), step.step))
            for step in steps
        ),
    )
    return track, steps, []


def _step_policy(follow_up_when: str | dict[int, str] | None, step: int) -> str:
    if isinstance(follow_up_when, dict):
        return follow_up_when.get(step, DEFAULT_FOLLOW_UP_POLICY)
    return follow_up_when or DEFAULT_FOLLOW_UP_POLICY


def follow_up_policies(tracks: Mapping[str, Track]) -> dict[tuple[str, int], str]:
    """Each step's follow-up task policy by (track, step), for the follow-up task round."""
    return {
        (track.name, step.step): step.follow_up_when
        for track in tracks.values()
        for step in track.steps
    }


def read_tracks(templates_dir: Path) -> TracksReading:
    """Every track folder under ``tracks/``, with every problem found in any of them."""
    tracks_dir = templates_dir / TRACKS_FOLDER
    if not tracks_dir.is_dir():
        problem = LintProblem(
            TRACKS_FOLDER,
            None,
            f"no such folder under {templates_dir}: create tracks/<track>/ (see README.md)",
        )
        return TracksReading({}, [], [problem])
    reading = TracksReading({}, [], [])
    for folder in sorted(tracks_dir.iterdir()):
        if not folder.is_dir() or folder.name.startswith("."):
            continue
        track, steps, problems = _read_track(templates_dir, folder)
        reading.steps.extend(steps)
        reading.problems.extend(problems)
        if track is not None:
            reading.tracks[track.name] = track
    return reading


def load_tracks(templates_dir: Path) -> dict[str, Track]:
    """All tracks by name; raises TemplateError listing every problem if any file is wrong."""
    reading = read_tracks(templates_dir)
    if reading.problems:
        raise TemplateError.from_problems(*reading.problems)
    return reading.tracks


def publish_tracks(connection: Connection, tracks: Mapping[str, Track]) -> int:
    """Replace ``ops.nurture_steps`` with the authored steps in one transaction; returns rows."""
    rows = [
        (
            step.track,
            step.step,
            step.template,
            step.delay_days,
            step.subject,
            step.follow_up_title,
            step.follow_up_due_days,
        )
        for track in tracks.values()
        for step in track.steps
    ]
    # Overlapping runs (PostgreSQL) publish in turns: one's delete does not see the rows
    # another has just inserted, and its insert would then break the primary key.
    with one_writer_at_a_time(connection, NURTURE_STEPS_LOCK):
        connection.begin()
        try:
            connection.execute("delete from ops.nurture_steps")
            if rows:
                connection.executemany(
                    "insert into ops.nurture_steps (track, step, template, delay_days, subject, "
                    "follow_up_title, follow_up_due_days) values (?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
        except BaseException:
            connection.rollback()
            raise
        connection.commit()
    return len(rows)
