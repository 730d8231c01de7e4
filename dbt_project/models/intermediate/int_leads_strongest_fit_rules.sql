{#-
    Independent of the clock: rebuilt only when leads or fit rules change, where ranking every
    lead's rules each run would sort millions of rows (int_leads_top_contributions
    merges these with the engagement side at the run's clock, and works out every lead's
    sentence again when this was built since it last wrote).
-#}
with

matched_rules as (

    select * from {{ ref('int_lead_fit_rules_matched') }}

),

ranked_rules as (

    select
        lead_id,
        rule_id,
        points,
        {{ dbt.concat([
            'description', "' (+'", dbt.cast('points', dbt.type_string()), "' fit)'"
        ]) }} as contribution_text,
        row_number() over (
            partition by lead_id
            order by points desc, rule_id asc
        ) as strength_rank

    from matched_rules
    where points > 0

),

final as (

    select
        {{ side_by_side(
            'fit', 'strength_rank', {'rule_id': 'rule_id', 'points': 'points', 'text': 'contribution_text'}
        ) }}
        lead_id,
        -- Bookkeeping: when this was built, for int_leads_top_contributions to compare.
        {{ run_started_at_timestamp() }} as built_at

    from ranked_rules
    where strength_rank <= {{ why_now_ranks() | length }}
    group by lead_id

)

select * from final
