{#- The lead attributes fit rules can look at (seed fit_rules.attribute). -#}
{%- set text_attributes = [
    'email_domain', 'title', 'industry', 'country', 'lead_source', 'region',
] -%}
{#- Longest pipe-separated value list a rule may hold (tested on the seed). -#}
{%- set max_values_per_rule = 100 -%}

with

leads as (

    select * from {{ ref('int_leads_deduplicated') }}

),

assignments as (

    select * from {{ ref('int_leads_assigned') }}

),

fit_rules as (

    select * from {{ ref('fit_rules') }}

),

value_positions as (

    {{ dbt.generate_series(max_values_per_rule) }}

),

lead_profiles as (

    select
        leads.lead_id,
        leads.email_domain,
        leads.title,
        leads.industry,
        leads.country,
        leads.lead_source,
        leads.employee_count,
        assignments.region,
        assignments.is_served_country

    from leads
    inner join assignments
        on leads.lead_id = assignments.lead_id

),

-- Unpivot: one row per (lead, attribute), so one join evaluates every rule.
lead_attributes as (

    {%- for attribute in text_attributes %}
        select
            lead_id,
            '{{ attribute }}' as attribute,
            lower({{ attribute }}) as text_value,
            cast(null as {{ dbt.type_numeric() }}) as number_value
        from lead_profiles
        where {{ attribute }} is not null
        union all
    {%- endfor %}
    select
        lead_id,
        'is_served_country' as attribute,
        lower({{ dbt.cast_bool_to_text('is_served_country') }}) as text_value,
        cast(null as {{ dbt.type_numeric() }}) as number_value
    from lead_profiles
    where is_served_country is not null
    union all
    select
        lead_id,
        'employee_count' as attribute,
        {{ dbt.cast('employee_count', dbt.type_string()) }} as text_value,
        cast(employee_count as {{ dbt.type_numeric() }}) as number_value
    from lead_profiles
    where employee_count is not null

),

-- One row per value of each rule's pipe-separated list.
rule_values as (

    select
        fit_rules.rule_id,
        lower(trim(
            {{ split_part_at('fit_rules.value', "'|'", 'value_positions.generated_number') }}
        )) as rule_value,
        case
            when fit_rules.operator in ('gte', 'lte')
                then cast(trim(fit_rules.value) as {{ dbt.type_numeric() }})
        end as rule_number

    from fit_rules
    inner join value_positions
        on
            value_positions.generated_number
            <= 1 + {{ dbt.length('fit_rules.value') }}
            - {{ dbt.length(dbt.replace('fit_rules.value', "'|'", "''")) }}

),

value_comparisons as (

    select
        lead_attributes.lead_id,
        fit_rules.rule_id,
        fit_rules.operator,
        case
            when fit_rules.operator in ('equals', 'in', 'not_in')
                then lead_attributes.text_value = rule_values.rule_value
            when fit_rules.operator = 'contains_any'
                then {{ dbt.position('rule_values.rule_value', 'lead_attributes.text_value') }} > 0
            when fit_rules.operator = 'ends_with_any'
                then
                    {{ dbt.right(
                        'lead_attributes.text_value', dbt.length('rule_values.rule_value')
                    ) }}
                    = rule_values.rule_value
            when fit_rules.operator = 'gte'
                then lead_attributes.number_value >= rule_values.rule_number
            when fit_rules.operator = 'lte'
                then lead_attributes.number_value <= rule_values.rule_number
        end as is_value_hit

    from lead_attributes
    inner join fit_rules
        on lead_attributes.attribute = fit_rules.attribute
    inner join rule_values
        on fit_rules.rule_id = rule_values.rule_id
    where rule_values.rule_value <> ''

),

rule_verdicts as (

    select
        lead_id,
        rule_id,
        operator,
        {{ dbt.bool_or('is_value_hit') }} as has_value_hit

    from value_comparisons
    group by lead_id, rule_id, operator

),

final as (

    select
        rule_verdicts.lead_id,
        fit_rules.rule_id,
        fit_rules.attribute,
        fit_rules.points,
        fit_rules.signal,
        fit_rules.description

    from rule_verdicts
    inner join fit_rules
        on rule_verdicts.rule_id = fit_rules.rule_id
    where
        case
            when rule_verdicts.operator = 'not_in' then not rule_verdicts.has_value_hit
            else rule_verdicts.has_value_hit
        end

)

select * from final
