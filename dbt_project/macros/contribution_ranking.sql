{#-
    The ranks of the "why now": how many reasons a lead's sentence gives (its three strongest
    contributions), and so how many fit rules and event types per lead can compete for them.
-#}
{% macro why_now_ranks() -%}
    {{ return([1, 2, 3]) }}
{%- endmacro %}

{#-
    Whether the "why now" candidate `other` ranks above `slot`: more points first, then
    engagement before fit, then key in a-z order. Each is a dict with the candidate's column
    prefix (`name`: <name>_points, <name>_key) and its `kind`; a missing candidate (null
    points) outranks nothing. The kinds are known when compiling, so their order is decided
    here rather than in SQL.
-#}
{% macro outranks(other, slot) -%}
    {%- if other.kind < slot.kind -%}
        {%- set kind_tie_break = 'true' -%}
    {%- elif other.kind > slot.kind -%}
        {%- set kind_tie_break = 'false' -%}
    {%- else -%}
        {%- set kind_tie_break = other.name ~ '_key < ' ~ slot.name ~ '_key' -%}
    {%- endif -%}
    (
        {{ other.name }}_points > {{ slot.name }}_points
        or ({{ other.name }}_points = {{ slot.name }}_points and {{ kind_tie_break }})
    )
{%- endmacro %}

{#-
    A lead's ranked rows side by side in one row: for each rank, max(case when <rank_column> =
    rank then <expression> end) as <prefix>_<rank>_<name>, for every (name, expression) of
    `columns`, each followed by a comma, for the ranks of why_now_ranks(). For use in a select
    grouped by lead.
-#}
{% macro side_by_side(prefix, rank_column, columns) -%}
    {%- for rank in why_now_ranks() %}
        {%- for name, expression in columns.items() %}
            max(case when {{ rank_column }} = {{ rank }} then {{ expression }} end)
                as {{ prefix }}_{{ rank }}_{{ name }},
        {%- endfor %}
    {%- endfor %}
{%- endmacro %}
