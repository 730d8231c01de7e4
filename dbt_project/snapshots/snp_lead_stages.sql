{#
    The stage history of every lead: a new row each time a run sees a lead's stage or
    stage_reason change. Versions are stamped with the run's clock (`as_of`), not the wall
    clock, so history follows the pipeline's time and a replayed run stamps the same times.
    A run whose clock is not after a lead's current version (the same run repeated after the
    hand-off moved the lead, or a past run reproduced) stamps the change one microsecond after
    that version's start: versions stay in order and each keeps its own key
    (dbt_scd_id is made of the lead and the stamp).
    A stage changes only when int_leads_staged writes the lead again, so a run compares only
    the leads it wrote since the last successful build finished (all of them without one, as in
    a `dbt build` by hand); a lead missing from the source keeps its current version.
    It runs once the stage's own tests pass, beside the rest of the build: waiting for dim_leads
    and its tests as well put it and the stage history mart at the end of every run, on one
    thread, for no check of the stage that the stage's tests do not make.
#}
{% snapshot snp_lead_stages %}
    {%- set recorded = none -%}
    {%- if execute -%}
        {%- set recorded = adapter.get_relation(this.database, this.schema, this.identifier) -%}
    {%- endif %}

{{ config(
    unique_key='lead_id',
    strategy='check',
    check_cols=['stage', 'stage_reason'],
    updated_at='observed_at',
) }}

    select
        staged_leads.lead_id,
        staged_leads.stage,
        staged_leads.stage_reason,
        staged_leads.nurture_track,
        {% if recorded is none -%}
            {{ as_of() }}
        {%- else -%}
            case
                when current_versions.dbt_valid_from >= {{ as_of() }}
                    then {{ dbt.dateadd('microsecond', 1, 'current_versions.dbt_valid_from') }}
                else {{ as_of() }}
            end
        {%- endif %} as observed_at

    from {{ ref('int_leads_staged') }} as staged_leads
    {% if recorded is not none -%}
        left join {{ this }} as current_versions
            on
                staged_leads.lead_id = current_versions.lead_id
                and current_versions.dbt_valid_to is null
        where staged_leads.built_at > {{ last_build_finished_at() }}
    {%- endif %}

{% endsnapshot %}
