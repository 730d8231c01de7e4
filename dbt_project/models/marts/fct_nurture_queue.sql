{%- set window_days = var('nurture_frequency_window_days') -%}

with

leads as (

    select * from {{ ref('dim_leads') }}

),

email_sends as (

    select * from {{ ref('stg_ops__email_sends') }}

),

nurture_steps as (

    select * from {{ ref('stg_ops__nurture_steps') }}

),

country_time_zones as (

    select * from {{ ref('country_time_zones') }}

),

-- A failed send does not count: the step is tried again.
live_sends as (

    select
        *,
        coalesce(sent_at, created_at) as counted_at

    from email_sends
    where send_status in ('pending', 'sent')

),

nurtured_leads as (

    select * from leads
    where
        nurture_track is not null
        and stage not in ('mql', 'sql', 'opportunity', 'customer')
        -- A lead known only by phone has no mailbox to nurture.
        and email is not null

),

track_progress as (

    select
        lead_id,
        nurture_track,
        max(nurture_step) as last_step,
        max(counted_at) as last_sent_at

    from live_sends
    group by lead_id, nurture_track

),

recent_sends as (

    select
        lead_id,
        count(*) as recent_email_count

    from live_sends
    where counted_at > {{ dbt.dateadd('day', -window_days, as_of()) }}
    group by lead_id

),

next_steps as (

    select
        nurtured_leads.*,
        coalesce(track_progress.last_step, 0) + 1 as next_step,
        coalesce(track_progress.last_sent_at, nurtured_leads.track_entered_at) as step_clock_at,
        coalesce(recent_sends.recent_email_count, 0) as recent_email_count

    from nurtured_leads
    left join track_progress
        on
            nurtured_leads.lead_id = track_progress.lead_id
            and nurtured_leads.nurture_track = track_progress.nurture_track
    left join recent_sends
        on nurtured_leads.lead_id = recent_sends.lead_id

),

scheduled as (

    select
        next_steps.*,
        nurture_steps.template,
        nurture_steps.subject,
        nurture_steps.delay_days,
        nurture_steps.follow_up_title,
        nurture_steps.follow_up_due_days,
        {{ dbt.dateadd('day', 'nurture_steps.delay_days', 'next_steps.step_clock_at') }} as due_at,
        coalesce(
            country_time_zones.time_zone, '{{ var("nurture_fallback_time_zone") }}'
        ) as time_zone

    from next_steps
    -- No next step means the lead has finished its track: it leaves the queue.
    inner join nurture_steps
        on
            next_steps.nurture_track = nurture_steps.nurture_track
            and next_steps.next_step = nurture_steps.nurture_step
    left join country_time_zones
        on next_steps.country = country_time_zones.country_code

),

-- Quiet hours defer a step, they never drop it: it stays due and goes at the next run inside
-- the window.
checked as (

    select
        *,
        (
            due_at <= {{ as_of() }}
            and not is_suppressed
            and recent_email_count < {{ var('nurture_frequency_cap') }}
        ) as is_sendable,
        {{ is_in_send_window(as_of(), 'time_zone') }} as is_in_send_window

    from scheduled

),

final as (

    select
        lead_id,
        email,
        first_name,
        last_name,
        company,
        title,
        owner_rep_id,
        owner_name,
        owner_email,
        assignment_rule,
        assignment_rule_label,
        stage,
        stage_reason,
        nurture_track,
        next_step,
        template,
        subject,
        delay_days,
        due_at,
        is_sendable and is_in_send_window as is_due,
        time_zone,
        is_in_send_window,
        is_sendable and not is_in_send_window as is_deferred_quiet_hours,
        is_suppressed,
        suppression_reason,
        recent_email_count,
        follow_up_title,
        follow_up_due_days,
        why_now

    from checked

)

select * from final
