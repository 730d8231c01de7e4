{%- set band_width = var('score_band_width') -%}
{%- set thresholds = {
    'fit_score': var('mql_fit_threshold'),
    'engagement_score': var('mql_engagement_threshold'),
    'lead_score': none,
} -%}

with

leads as (

    select * from {{ ref('dim_leads') }}

),

progress as (

    select * from {{ ref('int_leads_progressed') }}

),

-- One row per (lead, score) so every score is banded by the same query.
lead_scores as (

    {%- for score_name in thresholds %}
        select
            leads.lead_id,
            '{{ score_name }}' as score_name,
            leads.{{ score_name }} as score,
            progress.has_reached_opportunity as is_converted
        from leads
        inner join progress
            on leads.lead_id = progress.lead_id
        {{ 'union all' if not loop.last }}
    {%- endfor %}

),

banded as (

    select
        score_name,
        floor(score / {{ band_width }}) * {{ band_width }} as score_band_lower,
        is_converted

    from lead_scores

),

summarised as (

    select
        score_name,
        score_band_lower,
        count(*) as lead_count,
        sum(case when is_converted then 1 else 0 end) as converted_count

    from banded
    group by score_name, score_band_lower

),

final as (

    select
        score_name,
        cast(score_band_lower as {{ dbt.type_int() }}) as score_band_lower,
        cast(score_band_lower + {{ band_width }} as {{ dbt.type_int() }}) as score_band_upper,
        lead_count,
        converted_count,
        converted_count * 1.0 / lead_count as conversion_rate,
        case score_name
            {%- for score_name, threshold in thresholds.items() if threshold is not none %}
                when '{{ score_name }}' then score_band_lower >= {{ threshold }}
            {%- endfor %}
        end as is_at_or_above_mql_threshold

    from summarised

)

select * from final
