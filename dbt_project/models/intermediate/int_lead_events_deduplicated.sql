{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key='event_id',
    on_schema_change='append_new_columns',
) }}

{#-
    Only loads after the newest one already in the table (newest_load_in_this). delete+insert
    rather than merge: both replace an event by event_id, delete+insert in a fraction of the
    time on DuckDB.
-#}
{%- set newest_load = newest_load_in_this() -%}

with

events as (

    select * from {{ ref('stg_raw__events') }}

),

-- Only loads after the newest one already in the table: raw is append-only, so nothing older
-- can change. Strictly after: every file loads in a transaction of its own, one after the
-- other, stamped with the transaction's start, so no later load shares the newest stamp (and
-- the newest load's rows are all in the table: nothing delivered later replaced them).
new_loads as (

    select * from events
    {% if newest_load is not none %}
        where loaded_at > {{ newest_load }}
    {% endif %}

),

-- An event re-delivered in a later load counts once, as last delivered.
ranked as (

    select
        *,
        row_number() over (
            partition by event_id
            order by loaded_at desc, load_id desc, source_line desc
        ) as load_rank

    from new_loads

),

final as (

    select
        event_id,
        email,
        source_lead_id,
        event_type,
        occurred_at,
        campaign,
        url,
        message_key,
        source,
        load_id,
        loaded_at

    from ranked
    where load_rank = 1

)

select * from final
