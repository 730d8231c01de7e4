{#- Attributes where the most trusted source's, then the most recently updated, value wins. -#}
{%- set latest_wins = [
    'email', 'first_name', 'last_name', 'company', 'title', 'industry', 'employee_count',
    'country', 'phone',
] -%}
{#- First-touch attributes: the earliest created non-null value wins, so attribution keeps the
    campaign that brought the person in. -#}
{%- set first_wins = ['lead_source', 'first_campaign'] -%}
{%- set trusted_first = survivorship_order() -%}
{%- set oldest_first = 'created_at, loaded_at, load_id, source_line' -%}

with

records as (

    select * from {{ ref('stg_raw__leads') }}

),

crosswalk as (

    select * from {{ ref('int_lead_identity_crosswalk') }}

),

source_priority as (

    select * from {{ ref('source_priority') }}

),

lead_records as (

    select
        records.*,
        crosswalk.lead_id,
        -- Unlisted sources rank after every listed one.
        coalesce(source_priority.priority, 2147483647) as source_rank

    from records
    inner join crosswalk
        on records.lead_record_id = crosswalk.lead_record_id
    left join source_priority
        on records.source = source_priority.source

),

merged as (

    select
        lead_id,
        {%- for column in latest_wins %}
            {{ first_non_null(column, trusted_first) }} as {{ column }},
        {%- endfor %}
        {%- for column in first_wins %}
            {{ first_non_null(column, oldest_first) }} as {{ column }},
        {%- endfor %}
        -- The record sales works the lead by in its source system: the most trusted one (both
        -- columns are never null, so the two aggregates pick the same record).
        {{ first_non_null('source', trusted_first) }} as source,  -- noqa: RF04
        {{ first_non_null('source_lead_id', trusted_first) }} as source_lead_id,
        -- An opt-out from any source is honoured: consent is never undone by another system.
        {{ dbt.bool_or('is_do_not_email') }} as is_do_not_email,
        min(created_at) as created_at,
        max(updated_at) as updated_at,
        count(*) as record_count,
        count(distinct source) as source_count

    from lead_records
    group by lead_id

),

final as (

    select
        lead_id,
        {%- for column in latest_wins + first_wins %}
            {{ column }},
        {%- endfor %}
        {{ dbt.split_part('email', "'@'", 2) }} as email_domain,
        source,
        source_lead_id,
        is_do_not_email,
        created_at,
        updated_at,
        record_count,
        source_count,
        -- Bookkeeping: when this was built, for the per-lead models a run writes in part.
        {{ run_started_at_timestamp() }} as built_at

    from merged

)

select * from final
