{#-
    Who owns each lead, and by which rule (docs/sales.md, "How leads are assigned").

    Ownership is state, not a definition: an assigned lead keeps its owner while the owner takes
    leads, so this model reads its own earlier rows and is never rebuilt from scratch
    (full_refresh=false: a --full-refresh of the project must not deal the leads out again).
    A run writes the leads whose row changed (new leads, leads whose owner left, a changed
    country, segment or rule wording) and leaves the rest, so int_leads_profiled works out
    every lead again only when something here changed.
-#}
{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key='lead_id',
    full_refresh=false,
    on_schema_change='sync_all_columns',
    post_hook="{{ delete_leads_merged_away() }}",
) }}
{%- set has_history = assignment_history_exists() %}
{%- set compared_columns = [
    'country', 'is_served_country', 'region', 'segment', 'owner_rep_id', 'owner_name',
    'owner_email', 'assignment_rule', 'assignment_rule_label', 'reassigned_from_rep_id',
] %}

with

leads as (

    select * from {{ ref('int_leads_deduplicated') }}

),

country_regions as (

    select * from {{ ref('country_regions') }}

),

segments as (

    select * from {{ ref('segments') }}

),

reps as (

    select * from {{ ref('dim_reps') }}

),

assignment_rules as (

    select * from {{ ref('assignment_rules') }}

),

fit_rules as (

    select * from {{ ref('fit_rules') }}

),

-- Who owned which lead after the last run; nothing in a first build.
stored_assignments as (

    {% if has_history -%}
        select * from {{ this }}
    {%- else -%}
        select
            cast(null as {{ dbt.type_string() }}) as lead_id,
            cast(null as {{ dbt.type_string() }}) as owner_rep_id,
            cast(null as {{ dbt.type_string() }}) as assignment_rule,
            cast(null as {{ dbt.type_string() }}) as reassigned_from_rep_id
        where false
    {%- endif %}

),

-- Reps who take new leads: active, with room for at least one task a day. The daily capacity
-- is also the rep's weight in the round robin.
eligible_reps as (

    select
        rep_id,
        rep_name,
        rep_email,
        region,
        segment,
        daily_task_capacity as weight

    from reps
    where is_active and daily_task_capacity > 0

),

-- The free-mail domains the fit rules already know (signal personal_email): an address there
-- names a person, not an account.
personal_domain_lists as (

    select value as domain_list

    from fit_rules
    where
        signal = 'personal_email'
        and attribute = 'email_domain'
        and operator in ('equals', 'in')

),

lead_domains as (

    select distinct email_domain

    from leads
    where email_domain is not null

),

personal_domains as (

    select distinct lead_domains.email_domain

    from lead_domains
    inner join personal_domain_lists
        on {{ matches_listed('lead_domains.email_domain', 'personal_domain_lists.domain_list') }}

),

segment_bands as (

    select
        segment,
        min_employee_count,
        lead(min_employee_count) over (order by min_employee_count) as next_min_employee_count

    from segments

),

leads_with_region as (

    select
        leads.lead_id,
        leads.country,
        leads.industry,
        -- Unknown country is not the same as unserved: no verdict until the country is known.
        case
            when leads.country is not null then country_regions.region is not null
        end as is_served_country,
        coalesce(country_regions.region, '{{ var("fallback_region") }}') as region,
        segment_bands.segment,
        case
            when personal_domains.email_domain is null then lower(leads.email_domain)
        end as account_domain

    from leads
    left join personal_domains
        on leads.email_domain = personal_domains.email_domain
    left join country_regions
        on leads.country = country_regions.country_code
    left join segment_bands
        on
            leads.employee_count >= segment_bands.min_employee_count
            and (
                leads.employee_count < segment_bands.next_min_employee_count
                or segment_bands.next_min_employee_count is null
            )

),

-- A lead keeps its owner (and the rule that chose them) while the owner takes leads.
kept_assignments as (

    select
        stored_assignments.lead_id,
        stored_assignments.owner_rep_id,
        stored_assignments.assignment_rule,
        stored_assignments.reassigned_from_rep_id

    from stored_assignments
    inner join eligible_reps
        on stored_assignments.owner_rep_id = eligible_reps.rep_id
    inner join leads_with_region
        on stored_assignments.lead_id = leads_with_region.lead_id

),

-- New leads, and leads whose owner left or stopped taking leads (reassigned, and recorded so).
leads_to_assign as (

    select
        leads_with_region.*,
        stored_assignments.owner_rep_id as reassigned_from_rep_id

    from leads_with_region
    left join kept_assignments
        on leads_with_region.lead_id = kept_assignments.lead_id
    left join stored_assignments
        on leads_with_region.lead_id = stored_assignments.lead_id
    where kept_assignments.lead_id is null

),

-- The owner of an account: the rep who owns most of its leads (then the first rep_id).
account_owner_counts as (

    select
        leads_with_region.account_domain,
        kept_assignments.owner_rep_id,
        count(*) as lead_count

    from kept_assignments
    inner join leads_with_region
        on kept_assignments.lead_id = leads_with_region.lead_id
    where leads_with_region.account_domain is not null
    group by leads_with_region.account_domain, kept_assignments.owner_rep_id

),

ranked_account_owners as (

    select
        account_domain,
        owner_rep_id,
        row_number() over (
            partition by account_domain order by lead_count desc, owner_rep_id asc
        ) as owner_rank

    from account_owner_counts

),

account_owners as (

    select
        account_domain,
        owner_rep_id

    from ranked_account_owners
    where owner_rank = 1

),

-- An account's existing owner keeps its new leads.
account_assignments as (

    select
        leads_to_assign.lead_id,
        account_owners.owner_rep_id,
        'account_owner' as assignment_rule,
        leads_to_assign.reassigned_from_rep_id

    from leads_to_assign
    inner join account_owners
        on leads_to_assign.account_domain = account_owners.account_domain

),

leads_to_route as (

    select
        leads_to_assign.*,
        {{ dbt.concat([
            "coalesce(leads_to_assign.region, '')", "'|'",
            "coalesce(leads_to_assign.segment, '')", "'|'",
            "coalesce(leads_to_assign.country, '')", "'|'",
            "coalesce(lower(leads_to_assign.industry), '')",
        ]) }} as profile_key

    from leads_to_assign
    left join account_owners
        on leads_to_assign.account_domain = account_owners.account_domain
    where account_owners.owner_rep_id is null

),

-- The reps each rule routes to: the eligible reps matching every team column it fills.
rule_pools as (

    select
        assignment_rules.rule_id,
        eligible_reps.rep_id,
        eligible_reps.weight

    from assignment_rules
    inner join eligible_reps
        on
            {{ matches_listed('eligible_reps.region', 'assignment_rules.team_region') }}
            and {{ matches_listed('eligible_reps.segment', 'assignment_rules.team_segment') }}
            and {{ matches_listed('eligible_reps.rep_id', 'assignment_rules.rep_id') }}

),

-- Rules are matched once per distinct lead profile, not once per lead.
lead_profiles as (

    select distinct
        profile_key,
        region,
        segment,
        country,
        industry

    from leads_to_route

),

staffed_rules as (

    select distinct rule_id

    from rule_pools

),

-- The matching rules whose team has a rep taking leads, first (lowest priority, then rule_id)
-- first.
ranked_profile_rules as (

    select
        lead_profiles.profile_key,
        assignment_rules.rule_id,
        row_number() over (
            partition by lead_profiles.profile_key
            order by assignment_rules.priority, assignment_rules.rule_id
        ) as rule_rank

    from lead_profiles
    inner join assignment_rules
        on
            {{ matches_listed('lead_profiles.region', 'assignment_rules.lead_region') }}
            and {{ matches_listed('lead_profiles.segment', 'assignment_rules.lead_segment') }}
            and {{ matches_listed('lead_profiles.country', 'assignment_rules.lead_country') }}
            and {{ matches_listed('lead_profiles.industry', 'assignment_rules.lead_industry') }}
    inner join staffed_rules
        on assignment_rules.rule_id = staffed_rules.rule_id

),

profile_rules as (

    select
        profile_key,
        rule_id

    from ranked_profile_rules
    where rule_rank = 1

),

-- Each rule's new leads in a fixed order that keeps an account's leads together: the hash of
-- the account (or of the lead, without one) spreads companies evenly over the team.
pool_leads as (

    select
        leads_to_route.lead_id,
        leads_to_route.reassigned_from_rep_id,
        profile_rules.rule_id,
        row_number() over (
            partition by profile_rules.rule_id
            order by
                md5(coalesce(leads_to_route.account_domain, leads_to_route.lead_id)),
                leads_to_route.lead_id
        ) as pool_position

    from leads_to_route
    inner join profile_rules
        on leads_to_route.profile_key = profile_rules.profile_key

),

pool_sizes as (

    select
        rule_id,
        count(*) as new_lead_count

    from pool_leads
    group by rule_id

),

-- What each rep owns already, this run's account leads included: earlier runs count.
owned_leads as (

    select owner_rep_id from kept_assignments
    union all
    select owner_rep_id from account_assignments

),

owned_counts as (

    select
        owner_rep_id as rep_id,
        count(*) as owned_count

    from owned_leads
    group by owner_rep_id

),

pool_members as (

    select
        rule_pools.rule_id,
        rule_pools.rep_id,
        rule_pools.weight,
        pool_sizes.new_lead_count,
        coalesce(owned_counts.owned_count, 0) as owned_count

    from rule_pools
    inner join pool_sizes
        on rule_pools.rule_id = pool_sizes.rule_id
    left join owned_counts
        on rule_pools.rep_id = owned_counts.rep_id

),

-- The least a rep of the team owns per unit of weight, among those who own any.
pool_levels as (

    select
        rule_id,
        min(cast(owned_count as {{ dbt.type_float() }}) / weight) as owned_per_weight

    from pool_members
    where owned_count > 0
    group by rule_id

),

-- A rep who owns nothing yet (new, or back) starts level with the least loaded rep of the
-- team, rather than taking every new lead until they catch up.
leveled_members as (

    select
        pool_members.rule_id,
        pool_members.rep_id,
        pool_members.weight,
        pool_members.new_lead_count,
        case
            when pool_members.owned_count = 0
                then coalesce(floor(pool_members.weight * pool_levels.owned_per_weight), 0)
            else pool_members.owned_count
        end as owned_count

    from pool_members
    left join pool_levels
        on pool_members.rule_id = pool_levels.rule_id

),

-- How many turns each rep can need: with T = (owned + new + reps) / total weight, the rep's
-- turns finishing by T are at least as many as the new leads, so no chosen turn lies beyond.
member_turns as (

    select
        rule_id,
        rep_id,
        weight,
        new_lead_count,
        owned_count,
        greatest(
            0,
            ceil(
                (
                    sum(owned_count) over (partition by rule_id) + new_lead_count
                    + count(*) over (partition by rule_id)
                )
                * cast(weight as {{ dbt.type_float() }}) / sum(weight) over (partition by rule_id)
                - owned_count
            )
        ) + 1 as turn_count

    from leveled_members

),

-- Smooth weighted round robin: a rep's k-th next lead comes at (owned + k) / weight; the new
-- leads take the earliest turns of the team.
turns as (

    select
        rule_id,
        rep_id,
        weight,
        new_lead_count,
        owned_count,
        {{ numbers_up_to('turn_count') }} as turn_number

    from member_turns

),

ordered_turns as (

    select
        rule_id,
        rep_id,
        turn_number,
        new_lead_count,
        row_number() over (
            partition by rule_id
            order by
                cast(owned_count + turn_number as {{ dbt.type_float() }}) / weight,
                rep_id
        ) as turn_order

    from turns

),

-- The team's new leads in order, each rep's turns together: position p takes the p-th lead.
chosen_turns as (

    select
        rule_id,
        rep_id,
        row_number() over (partition by rule_id order by rep_id, turn_number) as pool_position

    from ordered_turns
    where turn_order <= new_lead_count

),

-- Each rep takes a run of consecutive leads (so an account's leads stay together) as long as
-- the turns the round robin gave them.
round_robin_assignments as (

    select
        pool_leads.lead_id,
        chosen_turns.rep_id as owner_rep_id,
        pool_leads.rule_id as assignment_rule,
        pool_leads.reassigned_from_rep_id

    from pool_leads
    inner join chosen_turns
        on
            pool_leads.rule_id = chosen_turns.rule_id
            and pool_leads.pool_position = chosen_turns.pool_position

),

-- No rule has a rep taking leads: the lead waits without an owner.
unassigned as (

    select
        leads_to_route.lead_id,
        cast(null as {{ dbt.type_string() }}) as owner_rep_id,
        cast(null as {{ dbt.type_string() }}) as assignment_rule,
        leads_to_route.reassigned_from_rep_id

    from leads_to_route
    left join profile_rules
        on leads_to_route.profile_key = profile_rules.profile_key
    where profile_rules.rule_id is null

),

assignments as (

    select * from kept_assignments
    union all
    select * from account_assignments
    union all
    select * from round_robin_assignments
    union all
    select * from unassigned

),

assigned as (

    select
        leads_with_region.lead_id,
        leads_with_region.country,
        leads_with_region.is_served_country,
        leads_with_region.region,
        leads_with_region.segment,
        assignments.owner_rep_id,
        eligible_reps.rep_name as owner_name,
        eligible_reps.rep_email as owner_email,
        assignments.assignment_rule,
        case
            when assignments.assignment_rule = 'account_owner'
                then 'Same company as leads this rep already owns'
            else coalesce(assignment_rules.description, assignments.assignment_rule)
        end as assignment_rule_label,
        assignments.reassigned_from_rep_id

    from leads_with_region
    inner join assignments
        on leads_with_region.lead_id = assignments.lead_id
    left join eligible_reps
        on assignments.owner_rep_id = eligible_reps.rep_id
    left join assignment_rules
        on assignments.assignment_rule = assignment_rules.rule_id

),

final as (

    select
        assigned.*,
        -- Bookkeeping: when this was written, for the per-lead models a run writes in part.
        {{ run_started_at_timestamp() }} as built_at

    from assigned
    {%- if has_history %}
    left join stored_assignments
        on assigned.lead_id = stored_assignments.lead_id
    where
        stored_assignments.lead_id is null
        {%- for column in compared_columns %}
        or assigned.{{ column }} is distinct from stored_assignments.{{ column }}
        {%- endfor %}
    {%- endif %}

)

select * from final
