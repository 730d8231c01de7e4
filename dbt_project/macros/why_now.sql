{#- "once" / "3 times", for the plain-words "why now" sentences. -#}
{% macro times_phrase(count_column) -%}
    case
        when {{ count_column }} = 1 then 'once'
        else {{ dbt.concat([dbt.cast(count_column, dbt.type_string()), "' times'"]) }}
    end
{%- endmacro %}
