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
