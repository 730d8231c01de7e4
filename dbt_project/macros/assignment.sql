{#-
    int_leads_assigned reads its own earlier rows (who owns which lead) when it has them: on an
    incremental run over a table that already records the assignment rule. A table written
    before assignment rules existed holds owners without the rule, so the run assigns every
    lead by the rules once.
-#}
{% macro assignment_history_exists() -%}
    {%- if not (is_incremental() and execute) -%}
        {%- do return(false) -%}
    {%- endif -%}
    {%- set stored_columns = adapter.get_columns_in_relation(this) | map(attribute='name') | list -%}
    {%- do return('assignment_rule' in stored_columns) -%}
{%- endmacro %}

{#-
    Whether `value` (SQL) is one of a rule's pipe-separated `listed` values (SQL), ignoring case;
    true when the rule leaves the list empty (any value). A null value is in no list.
-#}
{% macro matches_listed(value, listed) -%}
    ({{ listed }} is null or {{ dbt.position(
        "'|' || lower(" ~ value ~ ") || '|'", "'|' || lower(" ~ listed ~ ") || '|'"
    ) }} > 0)
{%- endmacro %}

{#-
    In a select list: one row for each number from 1 to `count` (SQL, an integer of the row),
    as a set-returning expression. Dispatched: duckdb and postgres.
-#}
{% macro numbers_up_to(count) -%}
    {{ return(adapter.dispatch('numbers_up_to', 'leadflow')(count)) }}
{%- endmacro %}

{% macro duckdb__numbers_up_to(count) -%}
    unnest(generate_series(1, cast({{ count }} as bigint)))
{%- endmacro %}

{% macro postgres__numbers_up_to(count) -%}
    generate_series(1, cast({{ count }} as bigint))
{%- endmacro %}

{% macro default__numbers_up_to(count) -%}
    {{ exceptions.raise_compiler_error(
        "numbers_up_to has no implementation for adapter '" ~ adapter.type()
        ~ "': add " ~ adapter.type() ~ "__numbers_up_to to dbt_project/macros/assignment.sql"
    ) }}
{%- endmacro %}
