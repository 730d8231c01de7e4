-- Conversions whose credits do not add up to exactly one under some attribution model: every
-- opportunity and every win must be credited once, however many campaigns touched the lead.
select
    lead_id,
    conversion_type,
    sum(first_touch_credit) as first_touch_total,
    sum(last_touch_credit) as last_touch_total,
    sum(linear_credit) as linear_total

from {{ ref('int_conversion_touches_credited') }}
group by lead_id, conversion_type
having
    abs(sum(first_touch_credit) - 1) > 1e-9
    or abs(sum(last_touch_credit) - 1) > 1e-9
    or abs(sum(linear_credit) - 1) > 1e-9
