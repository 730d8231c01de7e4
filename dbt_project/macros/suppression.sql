{#
    Events that stop email to a lead instead of adding engagement points. A compliance rule,
    not a scoring weight, so it lives here rather than in the editable seeds.
#}
{% macro suppression_event_types() -%}
    {{ return(['spam_report', 'unsubscribe', 'bounce', 'group_unsubscribe']) }}
{%- endmacro %}
