{{ config(
    materialized='incremental',
    incremental_strategy='merge',
    unique_key='event_id',
) }}

with

events as (

    select * from {{ ref('stg_raw__events') }}

),

-- Only loads at or after the newest one already merged: raw is append-only, so nothing older
-- can change. The newest load is read again because a load's rows share its loaded_at.
new_loads as (

    select * from events
    {% if is_incremental() %}
        where loaded_at >= (select max(this_table.loaded_at) from {{ this }} as this_table)
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
