{#- Attributes where the most trusted source's, then the most recently updated, value wins. -#}
{%- set latest_wins = [
    'email', 'first_name', 'last_name', 'company', 'title', 'industry', 'employee_count',
    'country', 'phone',
] -%}
{#- First-touch attributes: the earliest created non-null value wins, so attribution keeps the
    campaign that brought the person in. -#}
{%- set first_wins = ['lead_source', 'first_campaign'] -%}
{%- set newest_first = 'updated_at desc, loaded_at desc, load_id desc, source_line desc' -%}
{%- set trusted_first = 'source_rank, ' ~ newest_first -%}
{%- set oldest_first = 'created_at asc, loaded_at asc, load_id asc, source_line asc' -%}

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

survived_attributes as (

    select
        lead_id,
        {%- for column in latest_wins %}
            first_value({{ column }}) over (
                partition by lead_id
                order by case when {{ column }} is null then 1 else 0 end, {{ trusted_first }}
                rows between unbounded preceding and unbounded following
            ) as {{ column }},
        {%- endfor %}
        {%- for column in first_wins %}
            first_value({{ column }}) over (
                partition by lead_id
                order by case when {{ column }} is null then 1 else 0 end, {{ oldest_first }}
                rows between unbounded preceding and unbounded following
            ) as {{ column }},
        {%- endfor %}
        row_number() over (partition by lead_id order by {{ newest_first }}) as recency_rank

    from lead_records

),

record_summary as (

    select
        lead_id,
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
        record_summary.lead_id,
        {%- for column in latest_wins + first_wins %}
            survived_attributes.{{ column }},
        {%- endfor %}
        {{ dbt.split_part('survived_attributes.email', "'@'", 2) }} as email_domain,
        record_summary.is_do_not_email,
        record_summary.created_at,
        record_summary.updated_at,
        record_summary.record_count,
        record_summary.source_count

    from record_summary
    inner join survived_attributes
        on
            record_summary.lead_id = survived_attributes.lead_id
            and survived_attributes.recency_rank = 1

)

select * from final
