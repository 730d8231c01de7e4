"""The run summary: one object, shown as JSON, a Rich table and a Prefect markdown artifact."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

STAGE_ORDER = (
    "new",
    "engaged",
    "mql",
    "sql",
    "opportunity",
    "customer",
    "recycled",
    "disqualified",
)


@dataclass
class GateSummary:
    passed: bool
    blocked: list[str] = field(default_factory=list)  # assets whose critical suite failed
    explanation: str = ""
    warnings: int = 0


@dataclass
class RunSummary:
    run_id: str
    as_of: str
    files_loaded: int = 0
    files_skipped: int = 0
    leads_loaded: int = 0
    rows_loaded: int = 0
    rows_quarantined: int = 0
    quarantine_reasons: dict[str, int] = field(default_factory=dict)
    file_errors: list[str] = field(default_factory=list)  # files left unloaded, and why
    stage_counts: dict[str, int] = field(default_factory=dict)
    gate: GateSummary = field(default_factory=lambda: GateSummary(passed=True))
    handed_off: int = 0
    tasks_created: int = 0
    # Per rep, tasks waiting for room in their daily capacity (the sales manager's overflow).
    tasks_queued: dict[str, int] = field(default_factory=dict)
    emails_due: int = 0
    emails_sent: int = 0
    emails_failed: int = 0
    emails_not_rendered: int = 0
    emails_suppressed: int = 0  # due, but suppressed since the queue was built
    emails_gave_up: int = 0  # due, but failed LEADFLOW_SEND_MAX_ATTEMPTS times already
    emails_deferred: int = 0  # due, but over LEADFLOW_DAILY_SEND_LIMIT
    emails_deferred_quiet_hours: int = 0  # due, but outside the lead's send window
    emails_pending_unknown: int = 0  # claimed long ago, no word from the provider since
    emails_released_never_sent: int = 0  # claimed by a killed run, proven never sent: resent
    email_errors: list[str] = field(default_factory=list)  # distinct reasons, for the operator
    email_provider: str = "outbox"
    durations_s: dict[str, float] = field(default_factory=dict)
    runs_marked_crashed: int = 0  # earlier runs killed before they could record their end

    def crashed_note(self) -> str:
        if not self.runs_marked_crashed:
            return ""
        runs = "run" if self.runs_marked_crashed == 1 else "runs"
        return (
            f"{self.runs_marked_crashed} earlier {runs} never finished (the process was "
            "killed): marked crashed in ops.runs."
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def could_not_send(self) -> bool:
        """A send failed or an email could not be rendered (`leadflow run` exits 5)."""
        return bool(self.emails_failed or self.emails_not_rendered)

    def nurture_problems(self) -> list[str]:
        """What kept due emails from going out, or held them up, one clause each (empty when
        nothing did)."""
        counts = (
            (self.emails_failed, "failed"),
            (self.emails_not_rendered, "could not be rendered"),
            (self.emails_gave_up, "given up after repeated failures"),
            (self.emails_suppressed, "suppressed since the queue was built"),
            (self.emails_deferred, "deferred by the daily send limit"),
            (self.emails_deferred_quiet_hours, "deferred to the send window (quiet hours)"),
            (
                self.emails_pending_unknown,
                "pending with no word from the provider (check its activity feed; "
                "never re-sent blind)",
            ),
            (
                self.emails_released_never_sent,
                "claimed by a killed run but proven by the provider's events never sent: "
                "sent again",
            ),
        )
        return [f"{count:,} {what}" for count, what in counts if count]

    def overflow_note(self) -> str:
        """Reps over their daily task capacity and how many tasks wait, or empty."""
        if not self.tasks_queued:
            return ""
        waiting = ", ".join(f"{rep} {count:,}" for rep, count in sorted(self.tasks_queued.items()))
        return (
            f"{sum(self.tasks_queued.values()):,} tasks wait for room in their rep's daily "
            f"capacity (queued, highest priority first): {waiting}"
        )

    def ordered_stages(self) -> list[tuple[str, int]]:
        known = [(stage, self.stage_counts.get(stage, 0)) for stage in STAGE_ORDER]
        extra = sorted((s, n) for s, n in self.stage_counts.items() if s not in STAGE_ORDER)
        return known + extra

    def to_markdown(self) -> str:
        gate = "passed" if self.gate.passed else f"BLOCKED ({', '.join(self.gate.blocked)})"
        lines = [
            f"# LeadFlow run {self.run_id}",
            f"As of {self.as_of} UTC.",
            "",
            "| step | result |",
            "|---|---|",
            f"| extract | {self.files_loaded} files, {self.rows_loaded} rows loaded, "
            f"{self.rows_quarantined} quarantined, {self.files_skipped} already loaded, "
            f"{len(self.file_errors)} not loadable |",
            "| stages | "
            + ", ".join(f"{stage} {count}" for stage, count in self.ordered_stages())
            + " |",
            f"| gate | {gate}, {self.gate.warnings} warnings |",
            f"| hand-off | {self.handed_off} leads handed to sales |",
            f"| tasks | {self.tasks_created} sales tasks created"
            + (f"; {self.overflow_note()}" if self.tasks_queued else "")
            + " |",
            f"| nurture | {self.emails_sent} of {self.emails_due} due emails sent via "
            f"{self.email_provider}"
            + "".join(f", {problem}" for problem in self.nurture_problems())
            + " |",
        ]
        if self.gate.explanation:
            lines += ["", self.gate.explanation]
        if self.runs_marked_crashed:
            lines += ["", self.crashed_note()]
        lines += ["", *(f"- {error}" for error in self.file_errors)] if self.file_errors else []
        if self.email_errors:
            lines += ["", "Email problems:", *(f"- {error}" for error in self.email_errors)]
        return "\n".join(lines)

    def to_rich(self) -> Group:
        table = Table(title=f"LeadFlow run {self.run_id}", title_justify="left")
        table.add_column("step", style="bold")
        table.add_column("result")
        table.add_column("seconds", justify="right", style="dim")

        def seconds(step: str) -> str:
            return f"{self.durations_s[step]:.1f}" if step in self.durations_s else ""

        reasons = ", ".join(f"{code} {n}" for code, n in sorted(self.quarantine_reasons.items()))
        table.add_row(
            "extract",
            f"{self.files_loaded} files: {self.rows_loaded:,} rows loaded "
            f"({self.leads_loaded:,} leads), {self.rows_quarantined:,} quarantined"
            + (f" [dim]({reasons})[/dim]" if reasons else "")
            + (f", {self.files_skipped} already loaded" if self.files_skipped else "")
            + (f", [red]{len(self.file_errors)} not loadable[/red]" if self.file_errors else ""),
            seconds("extract"),
        )
        table.add_row(
            "transform",
            ", ".join(f"{stage} {count:,}" for stage, count in self.ordered_stages()),
            seconds("transform"),
        )
        gate = (
            "[green]passed[/green]"
            if self.gate.passed
            else f"[red]blocked[/red]: {', '.join(self.gate.blocked)}"
        )
        table.add_row("gate", f"{gate}, {self.gate.warnings} warnings", seconds("gate"))
        table.add_row("hand-off", f"{self.handed_off:,} leads handed to sales", seconds("handoff"))
        table.add_row(
            "nurture",
            f"{self.emails_sent:,} of {self.emails_due:,} due emails sent via "
            f"{self.email_provider}"
            + "".join(
                f", [{'red' if self.could_not_send else 'yellow'}]{problem}[/]"
                for problem in self.nurture_problems()
            ),
            seconds("nurture"),
        )
        table.add_row(
            "tasks",
            f"{self.tasks_created:,} sales tasks created"
            + (f", [yellow]{self.overflow_note()}[/yellow]" if self.tasks_queued else ""),
            "",
        )
        parts: list[Any] = [table]
        if self.gate.explanation:
            parts.append(Text(self.gate.explanation, style="red"))
        if self.runs_marked_crashed:
            parts.append(Text(self.crashed_note(), style="yellow"))
        parts += [Text(f"Email: {error}", style="red") for error in self.email_errors]
        return Group(*parts)
