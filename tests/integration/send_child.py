"""The nurture flow's sending, as its tasks run it, in a process a test may SIGKILL.

The fault test forks each run from a forkserver that imported this module once (so a run
starts in milliseconds, not the seconds Prefect's import takes), and calls the tasks' plain
functions: no Prefect server is needed, and the code is the one the flow runs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import datetime

from flows.nurture import create_follow_ups, send_due_steps


def run_nurture_sends(environment: Mapping[str, str], run_id: str, as_of: datetime) -> None:
    """Send the due steps, then write the follow-up tasks, as ``flows.nurture.nurture`` does."""
    os.environ.update(environment)
    send_due_steps.fn(run_id, as_of)
    create_follow_ups.fn(run_id, as_of)
