"""The committed GX project, copied so validation results land in a temporary folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from flows.settings import PROJECT_ROOT


def copy_expectations(folder: Path) -> Path:
    copy = folder / "expectations"
    shutil.copytree(
        PROJECT_ROOT / "expectations", copy, ignore=shutil.ignore_patterns("uncommitted")
    )
    return copy


@pytest.fixture
def expectations_dir(tmp_path: Path) -> Path:
    return copy_expectations(tmp_path)
