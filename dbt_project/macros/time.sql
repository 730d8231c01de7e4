{#- Fractional days from one timestamp to another (positive when end_at is later). -#}
{% macro days_between(start_at, end_at) -%}
    ({{ dbt.datediff(start_at, end_at, 'second') }} / 86400.0)
{%- endmacro %}

{#- Fractional hours from one timestamp to another (positive when end_at is later). -#}
{% macro hours_between(start_at, end_at) -%}
    ({{ dbt.datediff(start_at, end_at, 'second') }} / 3600.0)
{%- endmacro %}

{#- Points as they count at an age (in days): halved every engagement_half_life_days days. -#}
{% macro decayed(points, age_days) -%}
    ({{ points }} * power(0.5, {{ age_days }} / {{ var('engagement_half_life_days') }}))
{%- endmacro %}

{#-
    When this dbt invocation started, to the microsecond, as a timestamp: marks the rows a run
    wrote, so that a later run can tell them apart. Bookkeeping only, never a definition's "now"
    (that is as_of()).
-#}
{% macro run_started_at_timestamp() -%}
    {{ dbt.cast(dbt.string_literal(run_started_at.strftime('%Y-%m-%d %H:%M:%S.%f')), dbt.type_timestamp()) }}
{%- endmacro %}
