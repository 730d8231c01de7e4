{#-
    The ranks of the "why now": how many reasons a lead's sentence gives (its three strongest
    contributions), and so how many fit rules and event types per lead can compete for them.
-#}
{% macro why_now_ranks() -%}
    {{ return([1, 2, 3]) }}
{%- endmacro %}

{#-
    Whether the "why now" candidate `other` ranks above `slot`: more points first, then
    engagement before fit. Each is a dict with the candidate's column prefix (`name`:
    <name>_points), its `kind` and its `rank` among its kind; a missing candidate (null points)
    outranks nothing. Candidates of one kind keep the order their model gave them by exact
    points (int_leads_strongest_fit_rules, int_leads_engagement_accrued): decayed points
    rounded at another clock could tie or untie two event types, and the clock must not
    reorder them. The kinds and ranks are known when compiling, so that part is decided here
    rather than in SQL.
-#}
{% macro outranks(other, slot) -%}
    {%- if other.kind == slot.kind -%}
        ({{ other.name }}_points is not null and {{ 'true' if other.rank < slot.rank else 'false' }})
    {%- else -%}
        (
            {{ other.name }}_points > {{ slot.name }}_points
            or (
                {{ other.name }}_points = {{ slot.name }}_points
                and {{ 'true' if other.kind < slot.kind else 'false' }}
            )
        )
    {%- endif -%}
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
