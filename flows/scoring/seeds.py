"""The points as files: read the seeds, write the proposed ones, diff them, apply them."""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from flows.files import write_atomically

FIT_RULES = "fit_rules.csv"
ENGAGEMENT_POINTS = "engagement_points.csv"
THRESHOLDS = "mql_thresholds.yml"
DIFF = "diff.md"
THRESHOLD_VARS = ("mql_fit_threshold", "mql_engagement_threshold")
# Event types that stop email rather than score (dbt macro suppression_event_types): a
# compliance rule, never a weight to fit.
SUPPRESSION_EVENT_TYPES = frozenset({"spam_report", "unsubscribe", "bounce"})


class SeedError(Exception):
    """A seed or var the fit needs is missing or malformed; the message names file and fix."""


@dataclass(frozen=True)
class Seed:
    """A seed CSV as read: its header and rows, in file order."""

    path: Path
    fieldnames: tuple[str, ...]
    rows: tuple[dict[str, str], ...]

    def points(self, key: str) -> dict[str, int]:
        return {row[key]: int(row["points"]) for row in self.rows}


def read_seed(path: Path, key: str) -> Seed:
    try:
        with path.open(newline="") as file:
            reader = csv.DictReader(file)
            rows = tuple(reader)
            fieldnames = tuple(reader.fieldnames or ())
    except OSError as error:
        raise SeedError(f"{path}: cannot read it ({error.strerror})") from None
    for column in (key, "points"):
        if column not in fieldnames:
            raise SeedError(f"{path}: no column {column!r}; the header must name it")
    for line, row in enumerate(rows, start=2):
        try:
            int(row["points"])
        except (TypeError, ValueError):
            raise SeedError(
                f"{path}, line {line}: points {row['points']!r} is not a whole number"
            ) from None
    return Seed(path, fieldnames, rows)


@dataclass(frozen=True)
class ScoringVars:
    """The dbt vars the fit reads from dbt_project.yml."""

    mql_fit_threshold: int
    mql_engagement_threshold: int
    engagement_half_life_days: float


def read_vars(dbt_project_file: Path) -> ScoringVars:
    try:
        variables = (yaml.safe_load(dbt_project_file.read_text()) or {}).get("vars") or {}
    except (OSError, yaml.YAMLError) as error:
        raise SeedError(f"{dbt_project_file}: cannot read its vars ({error})") from None
    for name in (*THRESHOLD_VARS, "engagement_half_life_days"):
        if not isinstance(variables.get(name), int | float):
            raise SeedError(f"{dbt_project_file}: var {name} must be a number under `vars:`")
    return ScoringVars(
        mql_fit_threshold=int(variables["mql_fit_threshold"]),
        mql_engagement_threshold=int(variables["mql_engagement_threshold"]),
        engagement_half_life_days=float(variables["engagement_half_life_days"]),
    )


def with_points(seed: Seed, key: str, points: Mapping[str, int], *, scale_cap: bool = False) -> str:
    """The seed's CSV text with new points for the keys given, every other cell as it was.

    scale_cap: a daily cap moves with its points (the same number of events a day count).
    """
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=seed.fieldnames, lineterminator="\n")
    writer.writeheader()
    for row in seed.rows:
        new_row = dict(row)
        if row[key] in points:
            old, new = int(row["points"]), points[row[key]]
            new_row["points"] = str(new)
            if scale_cap and row.get("daily_cap") and old > 0:
                new_row["daily_cap"] = str(round(new * int(row["daily_cap"]) / old))
            elif scale_cap and row.get("daily_cap") is not None and old <= 0 < new:
                new_row["daily_cap"] = str(new)
        writer.writerow(new_row)
    return text.getvalue()


@dataclass(frozen=True)
class Change:
    kind: str  # "fit rule", "event type" or "threshold"
    name: str
    old: int
    new: int


def diff_markdown(changes: list[Change], summary: list[str]) -> str:
    lines = ["# Proposed scoring points", "", *summary, ""]
    lines += ["| kind | name | current | proposed | change |", "|---|---|---:|---:|---:|"]
    lines += [
        f"| {change.kind} | {change.name} | {change.old} | {change.new} | "
        f"{change.new - change.old:+d} |"
        for change in changes
    ]
    return "\n".join(lines) + "\n"


def replaced_var(text: str, name: str, value: int) -> str:
    """dbt_project.yml with one var's value replaced in place: comments and layout stay."""
    pattern = re.compile(rf"^(\s+{re.escape(name)}:\s*)[^\s#]+", re.MULTILINE)
    new_text, count = pattern.subn(lambda match: f"{match.group(1)}{value}", text, count=1)
    if count != 1:
        raise SeedError(f"dbt_project.yml: no line `{name}: <number>` under vars to replace")
    return new_text


def apply_proposal(proposed_dir: Path, dbt_project_dir: Path) -> list[Path]:
    """Copy the proposed seeds over the project's and set the proposed MQL thresholds."""
    try:
        thresholds = yaml.safe_load((proposed_dir / THRESHOLDS).read_text())
    except (OSError, yaml.YAMLError) as error:
        raise SeedError(
            f"{proposed_dir / THRESHOLDS}: no readable proposal ({error}); run "
            "`leadflow scoring fit` first"
        ) from None
    project_file = dbt_project_dir / "dbt_project.yml"
    text = project_file.read_text()
    for name in THRESHOLD_VARS:
        text = replaced_var(text, name, int(thresholds[name]))
    changed = []
    for name in (FIT_RULES, ENGAGEMENT_POINTS):
        target = dbt_project_dir / "seeds" / name
        temporary = target.with_name(f".{name}.tmp")
        shutil.copyfile(proposed_dir / name, temporary)
        os.replace(temporary, target)
        changed.append(target)
    write_atomically(project_file, text)
    return [*changed, project_file]
