"""Fixtures for the nurture email tests: the shipped templates, a copy to break, a queue row."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from flows.email.templates import load_sample_context
from flows.settings import PROJECT_ROOT

SHIPPED_TEMPLATES = PROJECT_ROOT / "templates"


@pytest.fixture
def shipped_templates() -> Path:
    return SHIPPED_TEMPLATES


@pytest.fixture
def templates_copy(tmp_path: Path) -> Path:
    """A private copy of the shipped templates that a test may edit."""
    copy = tmp_path / "templates"
    shutil.copytree(SHIPPED_TEMPLATES, copy)
    return copy


@pytest.fixture
def sample_context() -> dict[str, Any]:
    return load_sample_context(SHIPPED_TEMPLATES)


@pytest.fixture
def queue_row() -> dict[str, Any]:
    """A ``fct_nurture_queue`` row as the nurture flow reads it (columns per data-contracts)."""
    return {
        "lead_id": "9b2c6f0e1d3a4b5c6d7e8f9a0b1c2d3e",
        "email": "ana.silva@example.com",
        "first_name": "Ana",
        "last_name": "Silva",
        "company": "Acme Freight",
        "title": "Marketing Manager",
        "owner_rep_id": "rep-7",
        "owner_name": "Sam Lee",
        "owner_email": "sam.lee@leadflow.example",
        "stage": "recycled",
        "stage_reason": "bad_timing",
        "nurture_track": "warm_up",
        "next_step": 1,
        "template": "tracks/warm_up/01-welcome.html",
        "due_at": None,
        "is_due": True,
        "follow_up_title": "Research {{ lead.company }}",
        "follow_up_due_days": 3,
    }


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


@pytest.fixture
def edit() -> Callable[[Path, str, str], None]:
    """Replace text in a template file, failing loudly if the text is not there."""
    return _edit
