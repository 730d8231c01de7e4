{#
    The stage history of every lead: a new row each time a run sees a lead's stage or
    stage_reason change. Versions are stamped with the run's clock (`as_of`), not the wall
    clock, so history follows the pipeline's time and a replayed run stamps the same times.
#}
{% snapshot snp_lead_stages %}

{{ config(
    unique_key='lead_id',
    strategy='check',
    check_cols=['stage', 'stage_reason'],
    updated_at='observed_at',
) }}

    select
        lead_id,
        stage,
        stage_reason,
        nurture_track,
        {{ as_of() }} as observed_at

    from {{ ref('dim_leads') }}

{% endsnapshot %}
