-- Rows of seed fit_rules that int_lead_fit_rules_matched cannot evaluate: more than the 100
-- pipe-separated values it reads per rule, a gte / lte / gt / lt rule whose value is not a
-- number, a between rule whose value is not two numbers (`lower|upper`), or a rule without a
-- value that is not is_missing. Fix the listed rows in dbt_project/seeds/fit_rules.csv.
{# True where the text (put in for @) is not a plain decimal number. #}
{%- set not_a_number = (
    "(trim(translate(@, '0123456789.-', '')) <> '' or trim(@) in ('', '.', '-'))"
) %}

with

fit_rules as (

    select
        rule_id,
        operator,
        value,
        1 + {{ dbt.length('value') }}
        - {{ dbt.length(dbt.replace('value', "'|'", "''")) }} as value_count

    from {{ ref('fit_rules') }}

),

final as (

    select
        rule_id,
        operator,
        value

    from fit_rules
    where
        value_count > 100
        or (value is null and operator <> 'is_missing')
        or (operator in ('gte', 'lte', 'gt', 'lt') and {{ not_a_number | replace('@', 'value') }})
        or (
            operator = 'between'
            and (
                value_count <> 2
                or {{ not_a_number | replace('@', dbt.split_part('value', "'|'", 1)) }}
                or {{ not_a_number | replace('@', dbt.split_part('value', "'|'", 2)) }}
            )
        )

)

select * from final
