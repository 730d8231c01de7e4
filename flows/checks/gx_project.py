"""LeadFlow's Great Expectations project (``expectations/gx/``): loading it and running its gates.

Each asset has one checkpoint, ``<asset>.pre_send_gate``, running the suites
``<asset>.critical`` and ``<asset>.warning``. One checkpoint per asset, not one for all: GX passes
the same batch parameters to every validation definition of a checkpoint, and a dataframe batch
takes exactly one parameter, the frame itself.

Great Expectations is imported on first use: the import alone takes seconds, and commands that
never validate (help, previews) should not pay for it.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse
from urllib.request import url2pathname

import pandas as pd

if TYPE_CHECKING:
    from great_expectations import Checkpoint, ExpectationSuite
    from great_expectations.core import (
        ExpectationSuiteValidationResult,
        ExpectationValidationResult,
    )
    from great_expectations.data_context import FileDataContext

SEVERITIES = ("critical", "warning")
BLOCKING_SEVERITY = "critical"
GX_FOLDER = Path("gx")
PROJECT_FILE = GX_FOLDER / "great_expectations.yml"
GATE_CHECKPOINT_SUFFIX = ".pre_send_gate"
# What GX writes itself (great_expectations.yml), which git ignores: no part of the gate's
# definition. Each validation stores its result, one folder per run, and the result's Data
# Docs page at the same path.
UNCOMMITTED = GX_FOLDER / "uncommitted"
STORED_RESULTS = UNCOMMITTED / "validations"
RESULT_PAGES = UNCOMMITTED / "data_docs" / "local_site" / "validations"


class GateConfigError(Exception):
    """The GX project is missing or broken: the message names the file and the fix."""


def gate_checkpoint_name(asset: str) -> str:
    return f"{asset}{GATE_CHECKPOINT_SUFFIX}"


def severity_of(suite_name: str) -> str:
    return suite_name.rsplit(".", 1)[-1]


def load_context(expectations_dir: Path) -> FileDataContext:
    """Open the committed GX project without creating or rewriting any committed file."""
    project_file = expectations_dir / PROJECT_FILE
    # GX scaffolds a fresh, empty project where none exists; for the gate that would hide a
    # wrong path behind "no expectations", so a missing project is an error here.
    if not project_file.is_file():
        raise GateConfigError(
            f"{project_file} not found: the gate needs LeadFlow's GX project. Point "
            "LEADFLOW_PROJECT_DIR at a LeadFlow checkout, or restore expectations/ from git."
        )
    import great_expectations as gx
    from great_expectations.exceptions import GreatExpectationsError

    # GX logs problems it recovers from (an expectation it cannot read, say) with a traceback,
    # which Python prints on the terminal when the application set up no logging. The gate
    # reports those problems itself, as GateConfigError.
    logging.getLogger("great_expectations").addHandler(logging.NullHandler())
    try:
        return gx.get_context(mode="file", project_root_dir=expectations_dir)
    except (GreatExpectationsError, ValueError) as error:
        raise GateConfigError(
            f"{project_file} cannot be loaded ({error}); fix the file or restore it from git."
        ) from None


def load_gate_checkpoint(
    context: FileDataContext, expectations_dir: Path, asset: str
) -> Checkpoint:
    """The asset's checkpoint, checked to validate only that asset with its severity suites."""
    from great_expectations.exceptions import GreatExpectationsError

    name = gate_checkpoint_name(asset)
    checkpoint_file = expectations_dir / GX_FOLDER / "checkpoints" / f"{name}.json"
    try:
        checkpoint = context.checkpoints.get(name)
    except (GreatExpectationsError, ValueError) as error:
        if not checkpoint_file.is_file():
            gated = sorted(
                path.stem.removesuffix(GATE_CHECKPOINT_SUFFIX)
                for path in checkpoint_file.parent.glob(f"*{GATE_CHECKPOINT_SUFFIX}.json")
            )
            raise GateConfigError(
                f"{checkpoint_file} not found: there is no gate for '{asset}' (assets with a "
                f"gate: {', '.join(gated) or 'none'}). Add the checkpoint, or pass only those."
            ) from None
        raise GateConfigError(
            f"{checkpoint_file} cannot be loaded ({error}); check that the validation "
            "definitions and suites it names exist under expectations/gx/."
        ) from None

    problems = _gate_problems(checkpoint, asset)
    if problems:
        raise GateConfigError(
            f"{checkpoint_file} is not a valid gate for '{asset}': {'; '.join(problems)}. "
            f"List the validation definitions {asset}.critical and {asset}.warning."
        )
    for definition in checkpoint.validation_definitions:
        unreadable = _unreadable_expectations(context, definition.suite)
        if unreadable:
            raise GateConfigError(
                f"{suite_file(expectations_dir, definition.suite.name)}: GX cannot read "
                f"{', '.join(unreadable)} (unknown type or invalid arguments) and would skip it "
                "without a word. Fix the expectation's type or kwargs."
            )
    return checkpoint


def _gate_problems(checkpoint: Checkpoint, asset: str) -> list[str]:
    suite_names = {f"{asset}.{severity}" for severity in SEVERITIES}
    problems = []
    for definition in checkpoint.validation_definitions:
        if definition.asset.name != asset:
            problems.append(f"{definition.name} validates '{definition.asset.name}'")
        if definition.suite.name not in suite_names:
            problems.append(f"suite '{definition.suite.name}' is not one of {sorted(suite_names)}")
    blocking_suite = f"{asset}.{BLOCKING_SEVERITY}"
    if all(d.suite.name != blocking_suite for d in checkpoint.validation_definitions):
        problems.append(f"no {blocking_suite} suite, so nothing could block")
    return problems


def _unreadable_expectations(context: FileDataContext, suite: ExpectationSuite) -> list[str]:
    """Expectations in the suite's file that GX dropped (with only a log line) while loading it."""
    store = context.expectations_store
    stored = store.get(store.get_key(name=suite.name))["expectations"]
    dropped = Counter(str(entry.get("type")) for entry in stored) - Counter(
        expectation.expectation_type for expectation in suite.expectations
    )
    return sorted(dropped.elements())


def suite_file(expectations_dir: Path, suite_name: str) -> Path:
    # GX's filesystem store keeps suite "a.b" in expectations/a/b.json.
    return expectations_dir.joinpath(GX_FOLDER, "expectations", *suite_name.split(".")).with_suffix(
        ".json"
    )


def run_checkpoint(
    checkpoint: Checkpoint, frame: pd.DataFrame
) -> list[ExpectationSuiteValidationResult]:
    result = checkpoint.run(batch_parameters={"dataframe": frame})
    return list(result.run_results.values())


def rerun_listing_rows(
    checkpoint: Checkpoint,
    suite_name: str,
    failed: Sequence[ExpectationValidationResult],
    frame: pd.DataFrame,
) -> list[ExpectationValidationResult]:
    """Validate the failed expectations again, this time listing every failing row.

    The checkpoints keep SUMMARY results (a sample of rows) because listing every failing row
    costs time and memory on a large frame; only failed expectations pay for COMPLETE.
    """
    import great_expectations as gx

    definition = next(d for d in checkpoint.validation_definitions if d.suite.name == suite_name)
    batch = definition.batch_definition.get_batch(batch_parameters={"dataframe": frame})
    suite = gx.ExpectationSuite(
        name=f"{suite_name}.failing_rows",
        expectations=[result.expectation_config for result in failed if result.expectation_config],
    )
    return list(batch.validate(suite, result_format="COMPLETE").results)


def build_data_docs(expectations_dir: Path) -> Path:
    """Render GX Data Docs (suites and stored results) under uncommitted/; returns index.html."""
    index_urls = load_context(expectations_dir).build_data_docs()
    return Path(url2pathname(urlparse(index_urls["local_site"]).path))


def prune_stored_results(expectations_dir: Path, kept_days: float) -> int:
    """Delete GX's stored validation results older than ``kept_days``, and the Data Docs pages
    of results no longer stored; returns how many results went.

    GX keeps every validation it ever ran: an hourly gate would fill the disk in the end.
    ``ops.gate_results`` keeps every verdict for good; these files only back the Data Docs.
    Pages are matched to results, not aged: each Data Docs build rewrites every page.
    """
    results, pages = expectations_dir / STORED_RESULTS, expectations_dir / RESULT_PAGES
    cutoff = time.time() - kept_days * 86_400
    old: list[Path] = []
    # Another run on this host may prune or validate at the same moment: a file or folder it
    # removed first is its part of the job, a folder it just wrote into stays.
    with suppress(FileNotFoundError):
        old.extend(path for path in results.rglob("*.json") if path.stat().st_mtime < cutoff)
        for path in old:
            path.unlink(missing_ok=True)
        for page in pages.rglob("*.html"):
            if not (results / page.relative_to(pages)).with_suffix(".json").exists():
                page.unlink(missing_ok=True)
        for root in (results, pages):
            # Deepest first, so a run's folder goes once its files have.
            for folder in sorted((p for p in root.rglob("*") if p.is_dir()), reverse=True):
                with suppress(OSError):
                    folder.rmdir()  # only an empty folder goes
    return len(old)
