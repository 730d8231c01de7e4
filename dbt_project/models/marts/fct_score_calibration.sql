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

-- Each lead's scores and whether it converted, joined once for the three scores.
converted_leads as (

    select
        leads.lead_id,
        {%- for score_name in thresholds %}
            leads.{{ score_name }},
        {%- endfor %}
        progress.has_reached_opportunity as is_converted

    from leads
    inner join progress
        on leads.lead_id = progress.lead_id

),

-- One row per (lead, score) so every score is banded by the same query.
lead_scores as (

    {%- for score_name in thresholds %}
        select
            lead_id,
            '{{ score_name }}' as score_name,
            {{ score_name }} as score,
            is_converted
        from converted_leads
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

-- AUC: the chance that a converted lead scores above a lead that did not convert (a tie counts
-- half). Per distinct score: its converted leads times the non-converted leads below it.
score_values as (

    select
        score_name,
        score,
        sum(case when is_converted then 1 else 0 end) as converted_count,
        sum(case when is_converted then 0 else 1 end) as not_converted_count

    from lead_scores
    group by score_name, score

),

score_values_below as (

    select
        *,
        coalesce(sum(not_converted_count) over (
            partition by score_name
            order by score
            rows between unbounded preceding and 1 preceding
        ), 0) as not_converted_below

    from score_values

),

score_aucs as (

    select
        score_name,
        sum(converted_count * (not_converted_below + 0.5 * not_converted_count))
        / nullif(sum(converted_count) * 1.0 * sum(not_converted_count), 0) as score_auc

    from score_values_below
    group by score_name

),

-- Precision and recall of each MQL threshold: of the leads at or above it, how many
-- converted; of the converted leads, how many it reached. Only scores with a threshold.
threshold_reach as (

    select
        score_name,
        is_converted,
        case score_name
            {%- for score_name, threshold in thresholds.items() if threshold is not none %}
                when '{{ score_name }}' then score >= {{ threshold }}
            {%- endfor %}
        end as is_at_or_above_threshold

    from lead_scores
    where score_name in {{ in_list(
        thresholds | dictsort | rejectattr('1', 'none') | map(attribute='0') | list
    ) }}

),

threshold_quality as (

    select
        score_name,
        sum(case when is_at_or_above_threshold and is_converted then 1 else 0 end) * 1.0
        / nullif(sum(case when is_at_or_above_threshold then 1 else 0 end), 0)
            as mql_threshold_precision,
        sum(case when is_at_or_above_threshold and is_converted then 1 else 0 end) * 1.0
        / nullif(sum(case when is_converted then 1 else 0 end), 0) as mql_threshold_recall

    from threshold_reach
    group by score_name

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
        summarised.score_name,
        cast(summarised.score_band_lower as {{ dbt.type_int() }}) as score_band_lower,
        cast(summarised.score_band_lower + {{ band_width }} as {{ dbt.type_int() }})
            as score_band_upper,
        summarised.lead_count,
        summarised.converted_count,
        summarised.converted_count * 1.0 / summarised.lead_count as conversion_rate,
        case summarised.score_name
            {%- for score_name, threshold in thresholds.items() if threshold is not none %}
                when '{{ score_name }}' then summarised.score_band_lower >= {{ threshold }}
            {%- endfor %}
        end as is_at_or_above_mql_threshold,
        {{ rounded('score_aucs.score_auc') }} as score_auc,
        {{ rounded('threshold_quality.mql_threshold_precision') }} as mql_threshold_precision,
        {{ rounded('threshold_quality.mql_threshold_recall') }} as mql_threshold_recall

    from summarised
    left join score_aucs
        on summarised.score_name = score_aucs.score_name
    left join threshold_quality
        on summarised.score_name = threshold_quality.score_name

)

select * from final
