-- Rows of seed fit_rules that int_lead_fit_rules_matched cannot evaluate: more than the 100
-- pipe-separated values it reads per rule, or a gte / lte rule whose value is not a number.
-- Fix the listed rows in dbt_project/seeds/fit_rules.csv.
select
    rule_id,
    operator,
    value

from {{ ref('fit_rules') }}
where
    1 + {{ dbt.length('value') }} - {{ dbt.length(dbt.replace('value', "'|'", "''")) }} > 100
    or (
        operator in ('gte', 'lte')
        and (trim(translate(value, '0123456789.-', '')) <> '' or trim(value) in ('', '.', '-'))
    )
