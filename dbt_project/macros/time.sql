{#- Fractional days from one timestamp to another (positive when end_at is later). -#}
{% macro days_between(start_at, end_at) -%}
    ({{ dbt.datediff(start_at, end_at, 'second') }} / 86400.0)
{%- endmacro %}

{#- Fractional hours from one timestamp to another (positive when end_at is later). -#}
{% macro hours_between(start_at, end_at) -%}
    ({{ dbt.datediff(start_at, end_at, 'second') }} / 3600.0)
{%- endmacro %}

{#- Points earned at occurred_at, as they count at the run's clock: halved every
    engagement_half_life_days days. -#}
{% macro decayed(points, occurred_at) -%}
    ({{ points }} * power(0.5, {{ days_between(occurred_at, as_of()) }} / {{ var('engagement_half_life_days') }}))
{%- endmacro %}
