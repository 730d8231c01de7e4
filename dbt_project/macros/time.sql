{#- Fractional days from one timestamp to another (positive when end_at is later). -#}
{% macro days_between(start_at, end_at) -%}
    ({{ dbt.datediff(start_at, end_at, 'second') }} / 86400.0)
{%- endmacro %}

{#- Fractional hours from one timestamp to another (positive when end_at is later). -#}
{% macro hours_between(start_at, end_at) -%}
    ({{ dbt.datediff(start_at, end_at, 'second') }} / 3600.0)
{%- endmacro %}
