{#- Fractional days from one timestamp to another (positive when end_at is later). -#}
{% macro days_between(start_at, end_at) -%}
    ({{ dbt.datediff(start_at, end_at, 'second') }} / 86400.0)
{%- endmacro %}

{#- Fractional hours from one timestamp to another (positive when end_at is later). -#}
{% macro hours_between(start_at, end_at) -%}
    ({{ dbt.datediff(start_at, end_at, 'second') }} / 3600.0)
{%- endmacro %}

{#- Points as they count at an age (in days): halved every engagement_half_life_days days. -#}
{% macro decayed(points, age_days) -%}
    ({{ points }} * power(0.5, {{ age_days }} / {{ var('engagement_half_life_days') }}))
{%- endmacro %}

{#-
    The engagement score at the run's clock of points accrued at an earlier one
    (int_leads_engagement_accrued): one decay factor per lead, 0 without points, to the cent.
-#}
{% macro engagement_score(accrued_points, accrued_as_of) -%}
    round(
        cast(
            coalesce({{ decayed(accrued_points, days_between(accrued_as_of, as_of())) }}, 0)
            as {{ dbt.type_numeric() }}
        ),
        2
    )
{%- endmacro %}

{#-
    When points worked out at `accrued_as_of` decay to `level`: `accrued_as_of` plus half-lives
    times log2(points / level), to the second (rounded down). Only for points and a level of one
    sign, the points further from zero; otherwise they never do, which the caller decides.
-#}
{% macro decays_to_at(points, accrued_as_of, level) -%}
    {{ dbt.dateadd(
        'second',
        dbt.cast(
            'floor(' ~ var('engagement_half_life_days') ~ ' * 86400.0 * (ln(' ~ points ~ ' / '
            ~ level ~ ') / ln(2)))',
            dbt.type_bigint(),
        ),
        accrued_as_of,
    ) }}
{%- endmacro %}

{#-
    When this dbt invocation started, to the microsecond, as a timestamp: marks the rows a run
    wrote, so that a later run can tell them apart. Bookkeeping only, never a definition's "now"
    (that is as_of()).
-#}
{% macro run_started_at_timestamp() -%}
    {{ dbt.cast(dbt.string_literal(run_started_at.strftime('%Y-%m-%d %H:%M:%S.%f')), dbt.type_timestamp()) }}
{%- endmacro %}
