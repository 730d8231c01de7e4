"""Deliberately malformed rows: what each kind breaks and which quarantine reason it earns.

Every bad row is a copy of a good row with exactly one defect, so it breaks exactly one rule of
docs/data-contracts.md and its reason code does not depend on the order the extract checks the
rules in. Bad rows get fresh row numbers, hence keys (except the duplicate, whose point is the
repeated key), so they never collide with a good row either.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from flows.demo.sql import choice, literal, string_list


@dataclass(frozen=True)
class Defect:
    kind: str
    reason_code: str
    # Column replaced by ``value``; None for a plain copy that repeats the row's key.
    column: str | None = None
    # SQL over the good row's columns; ``{timestamp}`` is the file's timestamp format macro
    # and ``bad_number`` numbers the bad rows of the file.
    value: str = ""
    # Further columns emptied, for a rule that only breaks when several are missing.
    also_null: tuple[str, ...] = ()

    @property
    def replacements(self) -> tuple[tuple[str, str], ...]:
        """(column, SQL value) pairs the defect writes."""
        written = ((self.column, self.value),) if self.column else ()
        return written + tuple((column, "null") for column in self.also_null)


# Events and outcomes find their lead by email or source record id; the demo's carry no id.
MISSING_EMAIL = Defect("missing_email", "missing_contact_key", "email", "null")
# '2024-02-30' cannot parse; the time of day and the file's format are kept.
UNPARSEABLE = "left({column}, 4) || '-02-30' || substr({column}, 11)"
ANCIENT = "'1899-12-31' || substr({column}, 11)"

# A lead without email or phone is no defect: its source record id finds it.
LEAD_DEFECTS = (
    Defect("email_without_domain", "malformed_email", "email",
           "split_part(trim(email), '@', 1) || '@'"),
    Defect("email_without_at", "malformed_email", "email", "replace(trim(email), '@', '-at-')"),
    Defect("unparseable_created_at", "invalid_timestamp", "created_at",
           UNPARSEABLE.format(column="created_at")),
    Defect("created_before_1990", "impossible_date", "created_at",
           ANCIENT.format(column="created_at")),
    Defect("updated_years_ahead", "impossible_date", "updated_at",
           "{timestamp}(updated_at::timestamp + interval 3 year)"),
    Defect("updated_before_created", "out_of_order", "updated_at",
           "{timestamp}(created_at::timestamp"
           " - to_seconds(3600 + floor(draw(bad_number, 'defect.days') * 30 * 86400)::bigint))"),
    Defect("non_numeric_employee_count", "invalid_number", "employee_count",
           choice(("50-100", "about 200", "ten"), "draw(bad_number, 'defect.employees')")),
)  # fmt: skip

EVENT_DEFECTS = (
    MISSING_EMAIL,
    Defect("unknown_event_type", "unknown_value", "event_type",
           choice(("email_opened", "page_visit", "webinar_registered"),
                  "draw(bad_number, 'defect.event_type')")),
    Defect("unparseable_occurred_at", "invalid_timestamp", "occurred_at",
           UNPARSEABLE.format(column="occurred_at")),
    Defect("repeated_event_id", "duplicate_key"),
)  # fmt: skip

OUTCOME_DEFECTS = (
    MISSING_EMAIL,
    Defect("unknown_outcome", "unknown_value", "outcome", "'closed_won'"),
    Defect("non_numeric_amount", "invalid_number", "amount", "'TBD'"),
    Defect("occurred_before_1990", "impossible_date", "occurred_at",
           ANCIENT.format(column="occurred_at")),
)  # fmt: skip


def create_bad_rows(
    connection: duckdb.DuckDBPyConnection,
    *,
    good: str,
    defects: tuple[Defect, ...],
    share: float,
    timestamp: str,
) -> dict[str, int]:
    """Create table ``<good>__bad``: about ``share`` of the good rows, each kind at least once.

    Rows are numbered by ``row_index``, from which the file's key is made; bad rows continue
    the numbering after the good ones. Returns the number of bad rows per reason code.
    """
    good_rows, last_index = connection.execute(
        f"select count(*), coalesce(max(row_index), -1) from {good}"
    ).fetchone() or (0, -1)
    wanted = max(len(defects), round(share * good_rows)) if good_rows else 0
    # Pre-filter with a generous margin so only a few rows are sorted by their draw.
    sampled = min(1.0, (3 * wanted + 20) / max(good_rows, 1))
    replaced_columns = sorted({column for d in defects for column, _ in d.replacements})
    replacements = "".join(
        "case defect_kind "
        + " ".join(
            f"when {literal(defect.kind)} then {value.format(timestamp=timestamp)}"
            for defect in defects
            for replaced, value in defect.replacements
            if replaced == column
        )
        + f" else {column} end as {column}, "
        for column in replaced_columns
    )
    row_index = f"{last_index} + 1 + bad_number"
    repeating_key = [literal(defect.kind) for defect in defects if defect.column is None]
    if repeating_key:
        row_index = f"""case when defect_kind in ({", ".join(repeating_key)})
            then row_index else {row_index} end"""
    connection.execute(f"""
        create or replace table {good}__bad as
        with picked as (
            select
                *,
                row_number() over (order by draw(row_index, 'defect'), row_index) - 1
                    as bad_number
            from {good}
            where draw(row_index, 'defect') < {sampled!r}
            order by bad_number
            limit {wanted}
        ),

        kinded as (
            select
                *,
                {string_list([defect.kind for defect in defects])}[1 + bad_number % {len(defects)}]
                    as defect_kind
            from picked
        )

        select * replace ({replacements} {row_index} as row_index)
        from kinded
    """)
    reasons = {defect.kind: defect.reason_code for defect in defects}
    by_reason: dict[str, int] = {}
    for kind, count in connection.execute(
        f"select defect_kind, count(*) from {good}__bad group by defect_kind"
    ).fetchall():
        by_reason[reasons[kind]] = by_reason.get(reasons[kind], 0) + count
    return by_reason
