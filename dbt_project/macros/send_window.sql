{#-
    Quiet hours: whether a UTC timestamp falls inside the nurture send window in a time zone.
    `(ts at time zone 'UTC') at time zone tz` reads the timestamp as UTC and gives the wall
    clock in tz, in DuckDB (ICU, bundled) and PostgreSQL alike, whatever the session zone.
-#}
{% macro is_in_send_window(utc_at, time_zone) -%}
    {%- set window = send_window() -%}
    {%- if window is none -%}
        true
    {%- else -%}
        {%- set local_at = "((" ~ utc_at ~ ") at time zone 'UTC') at time zone " ~ time_zone -%}
        (
            extract(isodow from {{ local_at }}) in ({{ window.iso_days | join(', ') }})
            and cast({{ local_at }} as time) >= cast('{{ window.start }}' as time)
            and cast({{ local_at }} as time) < cast('{{ window.end }}' as time)
        )
    {%- endif -%}
{%- endmacro %}

{#- The var `nurture_send_window`, checked: none (no quiet hours) or its days as ISO numbers. -#}
{% macro send_window() -%}
    {%- set configured = var('nurture_send_window', none) -%}
    {%- if configured is none or configured == '' -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set day_numbers = {'mon': 1, 'tue': 2, 'wed': 3, 'thu': 4, 'fri': 5, 'sat': 6, 'sun': 7} -%}
    {%- set example = "e.g. {days: [mon, tue, wed, thu, fri], start: '08:00', end: '18:00'}, or null for no quiet hours" -%}
    {%- set clock = '^([01][0-9]|2[0-3]):[0-5][0-9]$' -%}
    {%- set problems = [] -%}
    {%- if configured is not mapping -%}
        {%- do problems.append('it must be a mapping with days, start and end') -%}
    {%- else -%}
        {%- for key in configured if key not in ('days', 'start', 'end') -%}
            {%- do problems.append("unknown key '" ~ key ~ "' (allowed: days, start, end)") -%}
        {%- endfor -%}
        {%- set days = configured.get('days') -%}
        {%- if days is string or days is not iterable or days | length == 0 -%}
            {%- do problems.append('days must be a list of mon, tue, wed, thu, fri, sat, sun') -%}
        {%- else -%}
            {%- for day in days if (day | string | lower) not in day_numbers -%}
                {%- do problems.append("'" ~ day ~ "' is not a day: use mon, tue, wed, thu, fri, sat, sun") -%}
            {%- endfor -%}
        {%- endif -%}
        {%- for key in ('start', 'end') -%}
            {%- set value = configured.get(key) | string -%}
            {%- if not modules.re.match(clock, value) -%}
                {%- do problems.append(key ~ " is '" ~ value ~ "': give a 24-hour time in quotes, like '08:00'") -%}
            {%- endif -%}
        {%- endfor -%}
        {%- if not problems and configured.start | string >= configured.end | string -%}
            {%- do problems.append("start must be before end (a window over midnight is not supported)") -%}
        {%- endif -%}
    {%- endif -%}
    {%- if problems -%}
        {{ exceptions.raise_compiler_error(
            "The dbt var nurture_send_window is " ~ configured ~ ": " ~ problems | join('; ')
            ~ ". Set it in dbt_project/dbt_project.yml (or --vars), " ~ example ~ "."
        ) }}
    {%- endif -%}
    {%- set iso_days = [] -%}
    {%- for day in configured.days -%}
        {%- do iso_days.append(day_numbers[day | string | lower]) -%}
    {%- endfor -%}
    {{ return({'iso_days': iso_days | unique | sort, 'start': configured.start | string, 'end': configured.end | string}) }}
{%- endmacro %}
