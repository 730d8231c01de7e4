{#
    A stable bucket in [0, bucket_count) for an md5 hex string: its first 32 bits modulo the
    count. Used to spread leads over reps deterministically (the same lead always lands on the
    same rep while the team is unchanged). Hex parsing differs per database, hence the dispatch.
#}
{% macro hash_bucket(md5_hex, bucket_count) -%}
    {{ return(adapter.dispatch('hash_bucket', 'leadflow')(md5_hex, bucket_count)) }}
{%- endmacro %}

{% macro duckdb__hash_bucket(md5_hex, bucket_count) -%}
    (cast('0x' || substr({{ md5_hex }}, 1, 8) as bigint) % {{ bucket_count }})
{%- endmacro %}

{% macro postgres__hash_bucket(md5_hex, bucket_count) -%}
    (cast(cast('x' || lpad(substr({{ md5_hex }}, 1, 8), 16, '0') as bit(64)) as bigint)
        % {{ bucket_count }})
{%- endmacro %}

{% macro default__hash_bucket(md5_hex, bucket_count) -%}
    {{ exceptions.raise_compiler_error(
        "hash_bucket has no implementation for adapter '" ~ adapter.type()
        ~ "': add " ~ adapter.type() ~ "__hash_bucket to dbt_project/macros/hash_bucket.sql"
    ) }}
{%- endmacro %}
