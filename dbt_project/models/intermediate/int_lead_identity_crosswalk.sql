{#-
    Two lead records are the same person when they share a normalised email or a source key
    (the same record id in the same source system, e.g. a CRM record whose email was changed).
    The chains can be long (web form -> email -> CRM record -> its new email -> ...), so the
    people are the connected groups of the graph whose nodes are those keys.
-#}
{%- set record_order = 'created_at, loaded_at, load_id, source_line' -%}

with recursive

lead_records as (

    select
        lead_record_id,
        source,
        source_lead_id,
        email,
        created_at,
        loaded_at,
        load_id,
        source_line,
        {{ dbt.concat(["'source:'", 'source', "':'", 'source_lead_id']) }} as source_key

    from {{ ref('stg_raw__leads') }}

),

record_keys as (

    select
        lead_record_id,
        source_key as identity_key
    from lead_records

    union all

    select
        lead_record_id,
        {{ dbt.concat(["'email:'", 'email']) }} as identity_key
    from lead_records
    where email is not null

),

-- Keys carried by one record are linked, both ways (and every key to itself).
key_links as (

    select distinct
        record_key.identity_key as from_key,
        linked_key.identity_key as to_key

    from record_keys as record_key
    inner join record_keys as linked_key
        on record_key.lead_record_id = linked_key.lead_record_id

),

-- A walk starts only from keys smaller than all their neighbours: the smallest key of a group
-- is one, so it reaches the whole group, and most people (one email, one record) need one walk.
walk_roots as (

    select from_key as root_key
    from key_links
    group by from_key
    having min(to_key) = from_key

),

-- Every key each root reaches. UNION (not UNION ALL) ends the walk when a step finds nothing
-- new; a person has a handful of keys, so this stays a few rows per key.
reachable_keys (root_key, identity_key) as (

    select
        root_key,
        root_key as identity_key
    from walk_roots

    union

    select
        reachable_keys.root_key,
        key_links.to_key
    from reachable_keys
    inner join key_links
        on reachable_keys.identity_key = key_links.from_key

),

-- A group is named by its smallest key: the same for every key in it.
key_groups as (

    select
        identity_key,
        min(root_key) as group_key

    from reachable_keys
    group by identity_key

),

grouped_records as (

    select
        lead_records.*,
        key_groups.group_key

    from lead_records
    inner join key_groups
        on lead_records.source_key = key_groups.identity_key

),

-- The first email the person was known by anchors their id: a later change of address in the
-- CRM does not make them somebody else.
group_anchors as (

    select
        group_key,
        {{ first_non_null('email', record_order) }} as anchor_email

    from grouped_records
    group by group_key

),

final as (

    select
        grouped_records.lead_record_id,
        -- md5 of the (already normalised) anchor email equals lead_id_of(email), so events and
        -- outcomes that arrive before their lead join it. A person known only by source keys
        -- is keyed by them.
        case
            when group_anchors.anchor_email is not null
                then {{ dbt.hash('group_anchors.anchor_email') }}
            else {{ dbt.hash('grouped_records.group_key') }}
        end as lead_id,
        grouped_records.source,
        grouped_records.source_lead_id,
        grouped_records.email,
        case when group_anchors.anchor_email is null then 'source_key' else 'email' end
            as identified_by

    from grouped_records
    inner join group_anchors
        on grouped_records.group_key = group_anchors.group_key

)

select * from final
