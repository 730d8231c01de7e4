{#
    The run's clock as a timestamp expression. Models never read current_timestamp: they read
    this, so running the same warehouse with the same `as_of` gives the same result.
    The pipeline passes its clock in the environment (LEADFLOW_AS_OF) rather than as a var: a
    changed var makes dbt parse the whole project again. The variable is read only when
    executing (parsing needs no clock), so dbt does not record it as an input of the files that
    read the clock and a new clock makes it parse none of them again.
#}
{% macro as_of() -%}
    {%- set configured = var('as_of', none) -%}
    {%- if configured is none or configured | string | trim == '' -%}
        {%- set configured = env_var('LEADFLOW_AS_OF', '') if execute else '' -%}
    {%- endif -%}
    {%- if configured | string | trim == '' -%}
        {%- set value = run_started_at.strftime('%Y-%m-%d %H:%M:%S') -%}
    {%- else -%}
        {#- YAML may already have parsed an unquoted value into a datetime: str() restores it. -#}
        {%- set value = configured | string | trim | replace('T', ' ') -%}
        {%- set pattern = '^[0-9]{4}-[0-9]{2}-[0-9]{2}( [0-9]{2}:[0-9]{2}(:[0-9]{2}([.][0-9]+)?)?)?$' -%}
        {%- if not modules.re.match(pattern, value) -%}
            {{ exceptions.raise_compiler_error(
                "The run clock (dbt var 'as_of', else environment variable LEADFLOW_AS_OF) is '"
                ~ configured ~ "', which is not a UTC timestamp. "
                ~ "Pass it as 'YYYY-MM-DD HH:MM:SS', e.g. --vars '{as_of: \"2026-11-22 00:00:00\"}', "
                ~ "or leave both out to use the time the run started."
            ) }}
        {%- endif -%}
    {%- endif -%}
    {{ dbt.cast(dbt.string_literal(value), dbt.type_timestamp()) }}
{%- endmacro %}
