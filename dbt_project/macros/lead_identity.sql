{#
    Normalised email: what makes two spellings of one address the same key. Exports add case,
    surrounding (also non-breaking and zero-width) spaces, and composed vs decomposed accents;
    none of them makes a different mailbox. Unicode normalisation differs per database.
#}
{% macro normalised_email(column) -%}
    {{ return(adapter.dispatch('normalised_email', 'leadflow')(column)) }}
{%- endmacro %}

{% macro duckdb__normalised_email(column) -%}
    nullif(lower(trim(nfc_normalize({{ column }}), {{ email_padding() }})), '')
{%- endmacro %}

{% macro postgres__normalised_email(column) -%}
    nullif(lower(btrim(normalize({{ column }}, NFC), {{ email_padding() }})), '')
{%- endmacro %}

{#- Space, tab, line breaks, no-break space and zero-width space. -#}
{% macro email_padding() -%}
    (' ' || chr(9) || chr(10) || chr(13) || chr(160) || chr(8203))
{%- endmacro %}

{#-
    The id of the person an email belongs to when no lead record claims that email (yet): an
    event or outcome that arrives before its lead joins the lead once it does, because a lead
    first known by this email gets the same id (int_lead_identity_crosswalk).
-#}
{% macro lead_id_of(email_column) -%}
    {{ dbt.hash(normalised_email(email_column)) }}
{%- endmacro %}

{#- A raw row is identified by the load that brought it and its line in the loaded file. -#}
{% macro raw_record_id() -%}
    {{ dbt.hash(dbt.concat(['load_id', "'|'", dbt.cast('source_line', dbt.type_string())])) }}
{%- endmacro %}

{#- Source systems send '' and '  ' where they mean "unknown". -#}
{% macro clean_text(column) -%}
    nullif(trim({{ column }}), '')
{%- endmacro %}

{#-
    The first non-null value of `column` in the group, in `order_by` order: survivorship as one
    aggregate instead of a window per attribute. Ordered aggregates are spelled differently per
    database, hence the dispatch.
-#}
{#-
    Survivorship: the order in which a person's records are trusted for a latest-wins value -
    the most trusted source (seed source_priority, as `source_rank`), then the most recently
    updated, then the latest loaded. Used for the profile and the custom attributes alike.
-#}
{% macro survivorship_order() -%}
    source_rank, updated_at desc, loaded_at desc, load_id desc, source_line desc
{%- endmacro %}

{% macro first_non_null(column, order_by) -%}
    {{ return(adapter.dispatch('first_non_null', 'leadflow')(column, order_by)) }}
{%- endmacro %}

{% macro duckdb__first_non_null(column, order_by) -%}
    first({{ column }} order by {{ order_by }}) filter (where {{ column }} is not null)
{%- endmacro %}

{% macro postgres__first_non_null(column, order_by) -%}
    (array_agg({{ column }} order by {{ order_by }}) filter (where {{ column }} is not null))[1]
{%- endmacro %}

{#-
    The id of the person an event or outcome names when no lead record has its (source, record
    id) or its email (yet): the id a lead first known by that email, else by that source record,
    will get (int_lead_identity_crosswalk), so the row joins the lead once it arrives. `email`
    is already normalised.
-#}
{% macro unmatched_lead_id(email, source, source_lead_id) -%}
    case
        when {{ email }} is not null then {{ dbt.hash(email) }}
        else {{ dbt.hash(dbt.concat(["'source:'", source, "':'", source_lead_id])) }}
    end
{%- endmacro %}
