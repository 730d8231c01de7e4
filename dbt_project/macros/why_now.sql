{#- "once" / "3 times", for the plain-words "why now" sentences. -#}
{% macro times_phrase(count_column) -%}
    case
        when {{ count_column }} = 1 then 'once'
        else {{ dbt.concat([dbt.cast(count_column, dbt.type_string()), "' times'"]) }}
    end
{%- endmacro %}

{#-
    The "why now" sentence sales reads, put together on read from a lead's stored top
    contributions (contribution_<rank>_text and _last_at, int_leads_top_contributions): the texts
    in rank order, "; " between them, an event type the lead did not do within the window
    followed by "last N days ago" counted at the run's clock; "No scoring signals yet" for a
    lead with none. Counted on read, so that the days ticking over rewrite no stored row.
-#}
{% macro why_now_sentence() -%}
    {%- set phrases = [] -%}
    {%- for rank in why_now_ranks() -%}
        {%- set last_at = 'contribution_' ~ rank ~ '_last_at' -%}
        {%- set days_ago = dbt.cast(
            dbt.cast('floor(' ~ days_between(last_at, as_of()) ~ ')', dbt.type_int()),
            dbt.type_string(),
        ) -%}
        {%- set phrase = dbt.concat([
            'contribution_' ~ rank ~ '_text',
            "coalesce(" ~ dbt.concat(["', last '", days_ago, "' days ago'"]) ~ ", '')",
        ]) -%}
        {%- do phrases.append(
            phrase if loop.first else "coalesce(" ~ dbt.concat(["'; '", phrase]) ~ ", '')"
        ) -%}
    {%- endfor -%}
    coalesce({{ dbt.concat(phrases) }}, 'No scoring signals yet')
{%- endmacro %}
