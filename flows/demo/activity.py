"""What people do after they become leads: marketing events and the outcomes sales records.

The person's latent ``propensity`` (see ``flows.demo.generate``) sets how many of their events
show high intent and how recent they are; how many events they have is a habit of their own.
The outcomes are drawn from propensity and from those events: what a person did shortly before
sales heard of them decides how likely that ends in an opportunity.
"""

from __future__ import annotations

from collections import defaultdict

import duckdb

from flows.demo import vocabulary as v
from flows.demo.people import DAY_SECONDS, REP_IDS
from flows.demo.sql import IdFormat, choice, choice_by, literal, string_list, weighted_choice

EVENT_IDS = IdFormat("evt_", 10)
OUTCOME_IDS = IdFormat("out_", 7)
EVENT_WINDOW_DAYS = 180
# Events per person over a full window: the mean over everyone is about 10.
TYPICAL_EVENT_COUNT = 11.5
# A person's buying signal halves every this many days (as the shipped engagement points do).
SIGNAL_HALF_LIFE_DAYS = 21
# Sales works a lead from hand-off to its last outcome within this many days.
PATH_DAYS = 90

CAMPAIGNS_BY_EVENT_TYPE = {
    **dict.fromkeys(
        ("email_open", "email_click", "unsubscribe", "bounce", "spam_report"), v.EMAIL_CAMPAIGNS
    ),
    "webinar_attended": v.WEBINARS,
}


# Computed as the file is written, after sorting: at a million leads there are ten million
# events, and the fewer bytes the sort moves, the faster and leaner it is.
EVENT_FILE_COLUMNS = {
    "event_id": EVENT_IDS.of("row_index"),
    # A few events carry the address in another case than the person typed it.
    "email": """case
        when draw(row_index, 'event.email_case') < 0.03 then upper(email)
        when draw(row_index, 'event.email_case') < 0.06 then upper(email[1]) || email[2:]
        else email
    end""",
    "event_type": "event_type",
    "occurred_at": "occurred_at",
    "campaign": choice_by(
        "event_type", CAMPAIGNS_BY_EVENT_TYPE, "draw(row_index, 'event.campaign')"
    ),
    "url": f"""{literal(v.WEBSITE)} || case event_type
        when 'page_view' then {choice(v.SITE_PAGES, "draw(row_index, 'event.url')")}
        when 'email_click'
            then {choice(v.SITE_PAGES, "draw(row_index, 'event.url')")} || '?utm_medium=email'
        when 'pricing_page_view' then '/pricing'
        when 'content_download' then {choice(v.CONTENT_PAGES, "draw(row_index, 'event.url')")}
        when 'form_fill' then {choice(v.FORM_PAGES, "draw(row_index, 'event.url')")}
        when 'demo_request' then '/demo'
    end""",
    "message_key": "null",
}


def create_marketing_events(connection: duckdb.DuckDBPyConnection) -> None:
    """Table ``events__marketing_automation``: ``row_index`` (the event's number) numbers the
    rows and keys their draws, ``sort_at`` orders them; ``EVENT_FILE_COLUMNS`` does the rest."""
    window_seconds = EVENT_WINDOW_DAYS * DAY_SECONDS
    high_intent_type = weighted_choice(v.HIGH_INTENT_EVENT_MIX, "type_draw")
    everyday_type = weighted_choice(v.EVERYDAY_EVENT_MIX, "type_draw")
    connection.execute(f"""
        create or replace table events__marketing_automation as
        with volumes as (
            select
                person_id,
                email,
                propensity,
                -- A lead created inside the window has had less time to act.
                least(age_seconds, {window_seconds}) as window_seconds,
                -- Log-normal, its mean held at the typical count; a reading habit, so not
                -- propensity (what the shipped points over-reward).
                floor(
                    {TYPICAL_EVENT_COUNT}
                    * exp(0.8 * gauss(person_id, 'events.volume') - 0.32)
                    * window_seconds / {window_seconds}
                    + draw(person_id, 'events.rounding')
                )::bigint as event_count
            from people
            where not is_phone_only
        ),

        numbered as (
            select
                *,
                sum(event_count) over (order by person_id rows unbounded preceding)
                - event_count as first_event_number
            from volumes
        ),

        expanded as (
            select
                person_id,
                email,
                propensity,
                window_seconds,
                first_event_number + nth as event_number,
                draw(event_number, 'event.type') as type_draw
            from numbered, unnest(range(event_count)) as events (nth)
        ),

        typed as (
            select
                *,
                draw(event_number, 'event.intent') < sigmoid(-3.2 + propensity)
                    as is_high_intent,
                case
                    when is_high_intent then {high_intent_type}
                    else {everyday_type}
                end as event_type,
                -- A power above 1 pulls the draw towards 0 seconds ago: keen people, and
                -- high-intent moments, are recent.
                floor(window_seconds * pow(
                    draw(event_number, 'event.when'),
                    exp(0.5 * propensity + case when is_high_intent then 0.7 else 0 end)
                ))::bigint as seconds_ago
            from expanded
        )

        select
            event_number as row_index,
            before_as_of(seconds_ago) as sort_at,
            email,
            event_type,
            iso_t(before_as_of(seconds_ago)) as occurred_at,
            -- Not written to the file: what the outcomes are drawn from.
            person_id,
            seconds_ago
        from typed
    """)


OUTCOME_FILE_COLUMNS = {"outcome_id": OUTCOME_IDS.of("row_index")} | {
    column: column
    for column in ("email", "outcome", "reason", "rep_id", "task_id", "amount", "occurred_at")
}


def create_sales_outcomes(connection: duckdb.DuckDBPyConnection) -> None:
    """Table ``outcomes__crm``: for the few people sales worked, each outcome on their path.

    Sales hears of a person soon after they raise a hand (their latest high-intent event),
    or, for people who never did, at some moment of their life as a lead. Whether that happens
    and whether it turns into an opportunity or a win is drawn from the person's propensity (fit
    shows it) and from their buying signal at that moment: their events before it, weighted by
    ``BUYING_SIGNAL_BY_EVENT_TYPE`` and halved every ``SIGNAL_HALF_LIFE_DAYS``. So engagement
    causes conversion, recent and intense engagement most. Students and competitors are always
    rejected. The path (accepted -> opportunity -> won) follows within ``PATH_DAYS``, before
    as_of.
    """
    active_reps: dict[str, list[str]] = defaultdict(list)
    for index, (region, _, is_active) in enumerate(v.REP_TERRITORIES):
        if is_active:
            active_reps[region].append(REP_IDS.format(index))
    rejection_reason = weighted_choice(v.REJECTION_REASONS, "draw(person_id, 'outcome.reason')")
    loss_reason = weighted_choice(v.LOSS_REASONS, "draw(person_id, 'outcome.reason')")
    paths = " ".join(
        f"when {literal(final)} then {string_list(path)}" for final, path in v.OUTCOME_PATHS.items()
    )
    high_intent = string_list(list(v.HIGH_INTENT_EVENT_MIX))
    buying_signal = " ".join(
        f"when {literal(event_type)} then {weight!r}"
        for event_type, weight in v.BUYING_SIGNAL_BY_EVENT_TYPE.items()
    )
    connection.execute(f"""
        create or replace table outcomes__crm as
        with hands_raised as (
            select person_id, min(seconds_ago) as seconds_ago
            from events__marketing_automation
            where list_contains({high_intent}, event_type)
            group by person_id
        ),

        noticed as (
            select
                person_id,
                email,
                persona,
                propensity,
                employee_count,
                -- Leads from unserved countries are worked by the North American team.
                coalesce(region, 'NA') as region,
                coalesce(
                    -- A few minutes to two days after the hand was raised, before as_of.
                    hands_raised.seconds_ago - floor(least(
                        hands_raised.seconds_ago / 2,
                        600 + draw(person_id, 'outcome.lag') * 2 * {DAY_SECONDS}
                    ))::bigint,
                    floor(age_seconds * (0.05 + 0.9 * draw(person_id, 'outcome.handoff')))::bigint
                ) as handoff_age
            from people
            left join hands_raised using (person_id)
            where not is_phone_only and age_seconds > 3 * {DAY_SECONDS}
        ),

        signalled as (
            select
                noticed.person_id,
                ln(1 + coalesce(sum(
                    case events.event_type {buying_signal} else 0 end
                    * pow(
                        0.5,
                        (events.seconds_ago - noticed.handoff_age)
                        / {SIGNAL_HALF_LIFE_DAYS * DAY_SECONDS}
                    )
                ), 0)) as buying_signal
            from noticed
            left join events__marketing_automation as events
                on
                    noticed.person_id = events.person_id
                    and events.seconds_ago >= noticed.handoff_age
            group by noticed.person_id
        ),

        handed_off as (
            select
                noticed.*,
                signalled.buying_signal,
                draw(person_id, 'outcome.final') as final_draw
            from noticed
            inner join signalled using (person_id)
            where draw(person_id, 'outcome.reached_sales')
                < sigmoid(-3.4 + 0.8 * propensity + 0.6 * buying_signal)
        ),

        decided as (
            select
                *,
                case
                    when persona in ('student', 'competitor') then 'rejected'
                    when draw(person_id, 'outcome.converts')
                        < sigmoid(-1.0 + 0.8 * propensity + 0.5 * buying_signal)
                        then case
                            when final_draw < 0.35 then 'won'
                            when final_draw < 0.65 then 'lost'
                            else 'opportunity'
                        end
                    when final_draw < 0.45 then 'rejected'
                    when final_draw < 0.7 then 'no_response'
                    else 'accepted'
                end as final_outcome
            from handed_off
        ),

        stepped as (
            select
                *,
                unnest(path) as outcome,
                generate_subscripts(path, 1) as step,
                len(path) as steps
            from (select *, case final_outcome {paths} end as path from decided)
        ),

        timed as (
            select
                *,
                -- Step i happens in the i-th slice of the days after the hand-off.
                handoff_age - floor(
                    least(handoff_age, {PATH_DAYS * DAY_SECONDS})
                    * (step - 1 + 0.9 * draw(person_id * 8 + step, 'outcome.when'))
                    / steps
                )::bigint as step_age,
                round(
                    2400 + pow(coalesce(employee_count, 50), 0.7) * 400
                    * exp(0.3 * gauss(person_id, 'outcome.amount')),
                    -2
                ) as opportunity_amount
            from stepped
        ),

        indexed as (
            select *, row_number() over (order by step_age desc, person_id, step) - 1 as row_index
            from timed
        )

        select
            row_index,
            before_as_of(step_age) as sort_at,
            email,
            outcome,
            case outcome
                when 'rejected' then case persona
                    when 'student' then 'student'
                    when 'competitor' then 'bad_fit'
                    else {rejection_reason}
                end
                when 'lost' then {loss_reason}
                when 'no_response' then 'unresponsive'
            end as reason,
            {choice_by("region", active_reps, "draw(person_id, 'outcome.rep')")} as rep_id,
            null::varchar as task_id,
            case outcome
                when 'opportunity' then printf('%.2f', opportunity_amount)
                when 'won' then printf(
                    '%.2f',
                    round(opportunity_amount * (1 - 0.2 * draw(person_id, 'outcome.discount')), -2)
                )
            end as amount,
            iso_t(before_as_of(step_age)) as occurred_at
        from indexed
    """)
