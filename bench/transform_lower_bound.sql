-- The transform's lower bound: ONE hand-written DuckDB statement computing what dim_leads says
-- about each lead -- fit score, decayed engagement score, stage reason and stage -- from the
-- same raw tables, the same seeds (read from dbt_project/seeds/) and the same vars (read from
-- dbt_project.yml, passed as $parameters). The rules mirror, model by model:
-- int_lead_identity_crosswalk and int_leads_deduplicated, int_leads_assigned (region, served country), int_lead_fit_rules_matched
-- and int_leads_fit_scored, int_lead_events_scored and int_leads_engagement_accrued (with macro
-- engagement_score), int_leads_staged. What dim_leads adds beyond that (owners, why-now sentences, queues) is not
-- computed here: the bound is for scoring and staging.
create or replace temp table lower_bound_leads as
with recursive

fit_rules as (
    select
        rule_id,
        attribute,
        operator,
        points::integer as points,
        nullif(trim(signal), '') as signal,
        list_filter(
            list_transform(string_split(value, '|'), lambda v: lower(trim(v))),
            lambda v: v <> ''
        ) as rule_values,
        case when operator in ('gte', 'lte') then trim(value)::numeric end as rule_number
    from read_csv($fit_rules, header = true, all_varchar = true)
),

engagement_points as (
    select event_type, points::integer as points, daily_cap::integer as daily_cap
    from read_csv($engagement_points, header = true, all_varchar = true)
),

lifecycle_reasons as (
    select reason_code, stage
    from read_csv($lifecycle_reasons, header = true, all_varchar = true)
),

country_regions as (
    select country_code, region
    from read_csv($country_regions, header = true, all_varchar = true)
),

source_priority as (
    select source, priority::integer as priority
    from read_csv($source_priority, header = true, all_varchar = true)
),

lead_records as (
    select
        records.*,
        nullif(lower(trim(nfc_normalize(email), ' ' || chr(9) || chr(10) || chr(13) || chr(160) || chr(8203))), '')
            as normalised_email,
        'source:' || source || ':' || source_lead_id as source_key
    from raw.leads as records
),

-- Identity: the connected groups of records sharing an email or a source key.
record_keys as (
    select load_id, source_line, identity_key
    from (select load_id, source_line, source_key, normalised_email from lead_records)
    unpivot (identity_key for kind in (source_key, normalised_email))
),

key_links as (
    select distinct a.identity_key as from_key, b.identity_key as to_key
    from record_keys as a join record_keys as b using (load_id, source_line)
),

reachable_keys (identity_key, reached_key) as (
    select from_key, to_key from key_links
    union
    select reachable_keys.identity_key, key_links.to_key
    from reachable_keys join key_links on reachable_keys.reached_key = key_links.from_key
),

identified_records as (
    select
        lead_records.*,
        coalesce(
            md5(arg_min(normalised_email, (created_at, loaded_at, load_id, source_line))
                filter (where normalised_email is not null) over (partition by group_key)),
            md5(group_key)
        ) as lead_id,
        coalesce(source_priority.priority, 2147483647) as source_rank
    from lead_records
    join (
        select identity_key, min(reached_key) as group_key from reachable_keys group by all
    ) as key_groups on lead_records.source_key = key_groups.identity_key
    left join source_priority on lead_records.source = source_priority.source
),

lead_emails as (
    select distinct normalised_email as email, lead_id
    from identified_records
    where normalised_email is not null
),

-- The most trusted source's, then the latest, non-null value wins for profile attributes;
-- the earliest for the first-touch source.
leads as (
    select
        lead_id,
        split_part(
            arg_max(normalised_email, (-source_rank, updated_at, loaded_at, load_id, source_line))
                filter (where normalised_email is not null),
            '@', 2
        ) as email_domain,
        arg_max(nullif(trim(title), ''), (-source_rank, updated_at, loaded_at, load_id, source_line))
            filter (where nullif(trim(title), '') is not null) as title,
        arg_max(nullif(trim(industry), ''), (-source_rank, updated_at, loaded_at, load_id, source_line))
            filter (where nullif(trim(industry), '') is not null) as industry,
        arg_max(employee_count, (-source_rank, updated_at, loaded_at, load_id, source_line))
            filter (where employee_count is not null) as employee_count,
        arg_max(upper(nullif(trim(country), '')), (-source_rank, updated_at, loaded_at, load_id, source_line))
            filter (where nullif(trim(country), '') is not null) as country,
        arg_min(lower(nullif(trim(lead_source), '')), (created_at, loaded_at, load_id, source_line))
            filter (where nullif(trim(lead_source), '') is not null) as lead_source,
        min(created_at) as created_at
    from identified_records
    group by all
),

profiles as (
    select
        leads.*,
        coalesce(country_regions.region, $fallback_region) as region,
        case when leads.country is not null then country_regions.region is not null end
            as is_served_country
    from leads
    left join country_regions on leads.country = country_regions.country_code
),

fit_scores as (
    select
        lead_id,
        sum(points) as fit_score,
        bool_or(signal = 'competitor') as is_competitor,
        bool_or(signal = 'student') as is_student
    from (
        select
            profiles.lead_id,
            fit_rules.*,
            case fit_rules.attribute
                when 'email_domain' then lower(profiles.email_domain)
                when 'title' then lower(profiles.title)
                when 'industry' then lower(profiles.industry)
                when 'country' then lower(profiles.country)
                when 'lead_source' then lower(profiles.lead_source)
                when 'region' then lower(profiles.region)
                when 'is_served_country' then lower(profiles.is_served_country::varchar)
                when 'employee_count' then profiles.employee_count::varchar
            end as text_value,
            case when fit_rules.attribute = 'employee_count' then profiles.employee_count end
                as number_value
        from profiles
        cross join fit_rules
    )
    where
        text_value is not null
        and case operator
            when 'equals' then list_contains(rule_values, text_value)
            when 'in' then list_contains(rule_values, text_value)
            when 'not_in' then not list_contains(rule_values, text_value)
            when 'contains_any'
                then len(list_filter(rule_values, lambda v: contains(text_value, v))) > 0
            when 'ends_with_any'
                then len(list_filter(rule_values, lambda v: ends_with(text_value, v))) > 0
            when 'gte' then number_value >= rule_number
            when 'lte' then number_value <= rule_number
        end
    group by lead_id
),

-- A re-delivered event counts once; events after the clock do not exist yet. An event's
-- person is whoever had its email.
events as (
    select
        coalesce(lead_emails.lead_id, md5(named.email)) as lead_id,
        named.event_id,
        lower(trim(named.event_type)) as event_type,
        named.occurred_at
    from (
        select * replace (nullif(lower(trim(nfc_normalize(email), ' ' || chr(9) || chr(10) || chr(13) || chr(160) || chr(8203))), '') as email)
        from raw.events
    ) as named
    left join lead_emails using (email)
    where named.occurred_at <= $as_of
    qualify row_number() over (
        partition by event_id order by loaded_at desc, load_id desc, source_line desc
    ) = 1
),

outcomes as (
    select
        coalesce(lead_emails.lead_id, ops.sales_tasks.lead_id, md5(named.email)) as lead_id,
        named.outcome_id,
        lower(trim(named.outcome)) as outcome,
        lower(nullif(trim(named.reason), '')) as reason,
        named.occurred_at
    from (
        select * replace (nullif(lower(trim(nfc_normalize(email), ' ' || chr(9) || chr(10) || chr(13) || chr(160) || chr(8203))), '') as email)
        from raw.outcomes
    ) as named
    left join lead_emails using (email)
    left join ops.sales_tasks on named.task_id = ops.sales_tasks.task_id
    where named.occurred_at <= $as_of
),

latest_outcomes as (
    select
        lead_id,
        outcome as latest_outcome,
        occurred_at as latest_outcome_at,
        case
            when outcome = 'no_response' then coalesce(reason, 'unresponsive')
            when outcome in ('rejected', 'lost') then coalesce(reason, 'not_ready')
        end as feedback_reason
    from outcomes
    qualify row_number() over (
        partition by lead_id
        order by
            occurred_at desc,
            case outcome
                when 'won' then 1 when 'opportunity' then 2 when 'lost' then 3
                when 'rejected' then 4 when 'no_response' then 5 when 'accepted' then 6
            end,
            outcome_id desc
    ) = 1
),

-- Decayed points per event, capped per (lead, type, day), summed per lead in one pass, with
-- the part earned after sales' latest feedback alongside.
engagement_scores as (
    select
        lead_id,
        round(coalesce(sum(decayed_points), 0), 2) as engagement_score,
        count(*) filter (where base_points > 0) as positive_event_count,
        coalesce(sum(decayed_points) filter (where occurred_at > latest_outcome_at), 0)
            as engagement_since_feedback
    from (
        select
            *,
            case
                when daily_cap is null then base_points
                else greatest(0, least(base_points, daily_cap - earned_before_today))
            end
            * power(0.5, date_diff('second', occurred_at, $as_of) / 86400.0 / $half_life_days)
                as decayed_points
        from (
            select
                events.lead_id,
                events.occurred_at,
                coalesce(engagement_points.points, 0) as base_points,
                engagement_points.daily_cap,
                latest_outcomes.latest_outcome_at,
                sum(coalesce(engagement_points.points, 0)) over (
                    partition by events.lead_id, events.event_type, date_trunc('day', events.occurred_at)
                    order by events.occurred_at, events.event_id
                    rows between unbounded preceding and current row
                ) - coalesce(engagement_points.points, 0) as earned_before_today
            from events
            left join engagement_points on events.event_type = engagement_points.event_type
            left join latest_outcomes on events.lead_id = latest_outcomes.lead_id
        )
    )
    group by lead_id
),

won_leads as (
    select lead_id, min(occurred_at) as won_at
    from outcomes
    where outcome = 'won'
    group by lead_id
),

handoffs as (
    select lead_id, max(created_at) as handed_off_at
    from ops.sales_tasks
    where reason = 'mql_handoff'
    group by lead_id
),

reasoned as (
    select
        leads.lead_id,
        coalesce(fit_scores.fit_score, 0) as fit_score,
        coalesce(engagement_scores.engagement_score, 0) as engagement_score,
        case
            when won_leads.won_at is not null then 'won'
            when coalesce(
                handoffs.handed_off_at > latest_outcomes.latest_outcome_at
                or (handoffs.handed_off_at is not null and latest_outcomes.latest_outcome_at is null),
                false
            ) then 'awaiting_sales_feedback'
            when latest_outcomes.latest_outcome = 'opportunity' then 'opportunity_open'
            when
                feedback_reasons.stage = 'recycled'
                and coalesce(fit_scores.fit_score, 0) >= $fit_threshold
                and coalesce(engagement_scores.engagement_since_feedback, 0)
                >= $engagement_threshold
                then 'requalified_after_recycle'
            when latest_outcomes.feedback_reason is not null then latest_outcomes.feedback_reason
            when latest_outcomes.latest_outcome = 'accepted' then 'accepted_by_sales'
            when coalesce(fit_scores.is_competitor, false) then 'competitor_employee'
            when coalesce(fit_scores.is_student, false) then 'student'
            when
                coalesce(fit_scores.fit_score, 0) >= $fit_threshold
                and coalesce(engagement_scores.engagement_score, 0) >= $engagement_threshold
                then 'meets_mql_thresholds'
            when coalesce(engagement_scores.positive_event_count, 0) > 0
                and coalesce(fit_scores.fit_score, 0) < $fit_threshold
                then 'not_ready_low_fit'
            when coalesce(engagement_scores.positive_event_count, 0) > 0
                then 'not_ready_low_engagement'
            else 'not_ready_no_engagement'
        end as stage_reason
    from leads
    left join fit_scores on leads.lead_id = fit_scores.lead_id
    left join engagement_scores on leads.lead_id = engagement_scores.lead_id
    left join latest_outcomes on leads.lead_id = latest_outcomes.lead_id
    left join lifecycle_reasons as feedback_reasons
        on latest_outcomes.feedback_reason = feedback_reasons.reason_code
    left join won_leads on leads.lead_id = won_leads.lead_id
    left join handoffs on leads.lead_id = handoffs.lead_id
)

select reasoned.*, lifecycle_reasons.stage
from reasoned
left join lifecycle_reasons on reasoned.stage_reason = lifecycle_reasons.reason_code
