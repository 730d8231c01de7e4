{#- The canonical lead attributes fit rules can look at (seed fit_rules.attribute); any other
    name is a custom attribute (int_lead_attributes_unpivoted). -#}
{%- set text_attributes = [
    'email_domain', 'title', 'industry', 'country', 'lead_source', 'region',
] -%}
{%- set canonical_attributes = text_attributes + ['is_served_country', 'employee_count'] -%}
{#- Longest pipe-separated value list a rule may hold (tested on the seed). -#}
{%- set max_values_per_rule = 100 -%}
{%- set number_operators = ['gte', 'lte', 'gt', 'lt', 'between'] -%}
{%- set value_at_position = split_part_at(
    'fit_rules.value', "'|'", 'value_positions.generated_number'
) -%}

with

leads as (

    select * from {{ ref('int_leads_deduplicated') }}

),

assignments as (

    select * from {{ ref('int_leads_assigned') }}

),

custom_attributes as (

    select * from {{ ref('int_lead_attributes_unpivoted') }}

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
    union all
    -- Custom attributes: text, and a number where the text is one (time on site, visits).
    select
        lead_id,
        attribute,
        lower(attribute_value) as text_value,
        {{ number_or_null('attribute_value') }} as number_value
    from custom_attributes
    where attribute not in {{ in_list(canonical_attributes) }}

),

-- One row per value of each rule's pipe-separated list.
rule_values as (

    select
        fit_rules.rule_id,
        lower(trim({{ value_at_position }})) as rule_value,
        value_positions.generated_number as value_position,
        case
            when fit_rules.operator in {{ in_list(number_operators) }}
                then cast(trim({{ value_at_position }}) as {{ dbt.type_numeric() }})
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
            when fit_rules.operator = 'gt'
                then lead_attributes.number_value > rule_values.rule_number
            when fit_rules.operator = 'lt'
                then lead_attributes.number_value < rule_values.rule_number
            -- Value 1 of a between rule is the lower bound, value 2 the upper one.
            when fit_rules.operator = 'between' and rule_values.value_position = 1
                then lead_attributes.number_value >= rule_values.rule_number
            when fit_rules.operator = 'between'
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
        {{ dbt.bool_or('is_value_hit') }} as has_value_hit,
        min(case when is_value_hit then 1 else 0 end) = 1 as has_every_value_hit

    from value_comparisons
    group by lead_id, rule_id, operator

),

-- is_missing rules match the leads with no value for the attribute (no unpivoted row).
missing_verdicts as (

    select
        lead_profiles.lead_id,
        fit_rules.rule_id

    from lead_profiles
    cross join fit_rules
    left join lead_attributes
        on
            lead_profiles.lead_id = lead_attributes.lead_id
            and fit_rules.attribute = lead_attributes.attribute
    where
        fit_rules.operator = 'is_missing'
        and lead_attributes.lead_id is null

),

matched_rule_ids as (

    select
        lead_id,
        rule_id

    from rule_verdicts
    where
        case
            when operator = 'not_in' then not has_value_hit
            when operator = 'between' then has_every_value_hit
            else has_value_hit
        end

    union all

    select
        lead_id,
        rule_id

    from missing_verdicts

),

final as (

    select
        matched_rule_ids.lead_id,
        fit_rules.rule_id,
        fit_rules.attribute,
        fit_rules.points,
        fit_rules.signal,
        fit_rules.description

    from matched_rule_ids
    inner join fit_rules
        on matched_rule_ids.rule_id = fit_rules.rule_id

)

select * from final
