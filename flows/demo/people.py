"""The people behind the demo data: companies, persons, their lead records and the sales reps.

Every person's traits follow from one latent ``propensity`` (see ``flows.demo.generate``);
the SQL here builds the tables ``companies`` and ``people`` and the good rows of the two lead
files, ``leads__web_forms`` and ``leads__crm``, all inside one DuckDB connection.
"""

from __future__ import annotations

import unicodedata

import duckdb

from flows.demo import vocabulary as v
from flows.demo.sql import IdFormat, choice, choice_by, literal, lookup, weighted_choice

DAY_SECONDS = 86_400
LEAD_HISTORY_DAYS = 720

# Shares of persons by where their lead record lives: both files, only web forms, only the CRM.
# About 31 % of web-form persons (0.15 / 0.48) are also in the CRM.
SHARE_IN_BOTH_SOURCES = 0.15
SHARE_IN_WEB_FORMS = 0.48
SHARE_PHONE_ONLY = 0.03  # of the CRM-only people who have a phone

# Shuffled, and differently per source: a person's two ids tell nothing about each other.
WEB_FORM_IDS = IdFormat("WF-", 8, stride=3_141_593)
CRM_LEAD_IDS = IdFormat("CRM-", 8, stride=2_718_281)
REP_IDS = IdFormat("rep_", 2)

ALL_INDUSTRIES = {**v.ICP_INDUSTRIES, **v.OTHER_INDUSTRIES}


def _slug(name: str) -> str:
    """The ASCII letters of a name, lower-cased: what people put in email addresses."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return "".join(letter for letter in ascii_name.lower() if letter.isalpha())


def _slugs(names: tuple[str, ...]) -> tuple[str, ...]:
    """Slugs in the order of ``names``: the same draw picks a name and its slug."""
    return tuple(_slug(name) for name in names)


def create_companies(connection: duckdb.DuckDBPyConnection, *, leads: int) -> None:
    """Companies ranked by how well they fit the ideal customer profile (``fit_rank`` 0 = worst).

    A better fit means more employees and likelier an ICP industry; the name sounds like the
    industry. Duplicate names are dropped, so there are at most as many companies as names.
    """
    wanted = max(20, leads // 5)
    industry_slugs = {industry: _slugs(words) for industry, words in ALL_INDUSTRIES.items()}
    connection.execute(f"""
        create or replace table companies as
        with drawn as (
            select
                k,
                draw(k, 'company.fit') as fit,
                case
                    when draw(k, 'company.icp') < 0.2 + 0.7 * fit
                        then {choice(list(v.ICP_INDUSTRIES), "draw(k, 'company.industry')")}
                    else {choice(list(v.OTHER_INDUSTRIES), "draw(k, 'company.industry')")}
                end as industry
            from range({wanted}) as companies (k)
        ),

        named as (
            select
                *,
                {choice(v.COMPANY_PREFIXES, "draw(k, 'company.prefix')")} || ' '
                || {choice_by("industry", ALL_INDUSTRIES, "draw(k, 'company.word')")} as brand,
                {choice(_slugs(v.COMPANY_PREFIXES), "draw(k, 'company.prefix')")}
                || {choice_by("industry", industry_slugs, "draw(k, 'company.word')")} as brand_slug
            from drawn
            qualify row_number() over (partition by brand order by k) = 1
        )

        select
            row_number() over (order by fit, k) - 1 as fit_rank,
            brand || {weighted_choice(v.COMPANY_LEGAL_SUFFIXES, "draw(k, 'company.legal')")}
                as company,
            brand_slug || {weighted_choice(v.COMPANY_TLDS, "draw(k, 'company.tld')")}
                as domain,
            industry,
            greatest(2, round(exp(
                1.6 + 7.2 * least(1, greatest(0, fit + 0.12 * gauss(k, 'company.size')))
            )))::integer as employee_count
        from named
    """)


def create_people(connection: duckdb.DuckDBPyConnection, *, leads: int) -> None:
    """One row per person, with every attribute their lead records and activity derive from."""
    countries = {code: weight for code, (_, _, weight) in v.COUNTRY_REGIONS.items()} | {
        code: weight for code, (_, weight) in v.UNSERVED_COUNTRIES.items()
    }
    regions = {code: region for code, (region, _, _) in v.COUNTRY_REGIONS.items()}
    dialling_codes = {code: dial for code, (_, dial, _) in v.COUNTRY_REGIONS.items()} | {
        code: dial for code, (dial, _) in v.UNSERVED_COUNTRIES.items()
    }
    low_propensity_sources = {source: low for source, (low, _) in v.LEAD_SOURCE_MIX.items()}
    high_propensity_sources = {source: high for source, (_, high) in v.LEAD_SOURCE_MIX.items()}
    # Same draw, list shifted by one: a re-entered lead gets a different title of the same rank.
    shifted_titles = {
        tier: (*titles[1:], titles[0]) for tier, titles in v.TITLES_BY_SENIORITY.items()
    }
    competitor_names = [name for name, _, _ in v.COMPETITORS]
    competitor_sizes = [str(size) for _, _, size in v.COMPETITORS]
    university_names = [name for name, _ in v.UNIVERSITIES]
    university_domains = [domain for _, domain in v.UNIVERSITIES]
    history_seconds = LEAD_HISTORY_DAYS * DAY_SECONDS
    # One draw picks a competitor's (or school's) name, size and domain together.
    rival_draw = "draw(person_id, 'rival')"
    school_draw = "draw(person_id, 'school')"
    lead_source_draw = "draw(person_id, 'lead_source')"
    personal_domain = choice(v.PERSONAL_EMAIL_DOMAINS, "draw(person_id, 'mail')")

    connection.execute(f"""
        create or replace table people as
        with drawn as (
            select
                person_id,
                gauss(person_id, 'propensity') as propensity,
                -- Traits mix propensity with their own noise, keeping a variance of about 1.
                0.75 * propensity + 0.66 * gauss(person_id, 'company_fit') as company_fit,
                -- Who buys is whoever has the problem: a title says little about it.
                0.15 * propensity + 0.99 * gauss(person_id, 'seniority') as seniority,
                draw(person_id, 'persona') as persona_draw,
                0.04 * sigmoid(-2 * propensity) as student_share,
                0.2 * sigmoid(-propensity) as personal_share,
                draw(person_id, 'source') as source_draw
            from range({leads}) as people (person_id)
        ),

        typed as (
            select
                *,
                case
                    when persona_draw < 0.008 then 'competitor'
                    when persona_draw < 0.008 + student_share then 'student'
                    when persona_draw < 0.008 + student_share + personal_share then 'personal'
                    else 'business'
                end as persona,
                case
                    when persona = 'student' then 'student'
                    when seniority >= 1.75 then 'c_level'
                    when seniority >= 1.3 then 'vp'
                    when seniority >= 0.75 then 'director'
                    when seniority >= 0 then 'manager'
                    when seniority >= -2.05 then 'individual_contributor'
                    else 'intern'
                end as seniority_tier,
                {choice(v.FIRST_NAMES, "draw(person_id, 'first_name')")} as first_name,
                {choice(_slugs(v.FIRST_NAMES), "draw(person_id, 'first_name')")} as first_slug,
                {choice(v.LAST_NAMES, "draw(person_id, 'last_name')")} as last_name,
                {choice(_slugs(v.LAST_NAMES), "draw(person_id, 'last_name')")} as last_slug,
                {weighted_choice(countries, "draw(person_id, 'country')")} as country,
                case
                    when 0.5 * propensity + 0.87 * gauss(person_id, 'channel') > 0.5
                        then {weighted_choice(high_propensity_sources, lead_source_draw)}
                    else {weighted_choice(low_propensity_sources, lead_source_draw)}
                end as lead_source,
                floor(sigmoid(1.702 * company_fit) * (select count(*) from companies))::bigint
                    as fit_rank
            from drawn
        ),

        employed as (
            select
                typed.*,
                case persona
                    when 'student' then {choice(university_names, school_draw)}
                    when 'competitor' then {choice(competitor_names, rival_draw)}
                    else companies.company
                end as company,
                case persona
                    when 'student' then 'Education'
                    when 'competitor' then 'Software'
                    else companies.industry
                end as industry,
                case persona
                    when 'student' then null
                    when 'competitor'
                        then {choice(competitor_sizes, rival_draw)}::integer
                    else companies.employee_count
                end as employee_count,
                case persona
                    when 'student' then {choice(university_domains, school_draw)}
                    when 'competitor' then {choice(v.COMPETITOR_DOMAINS, rival_draw)}
                    when 'personal' then {personal_domain}
                    else companies.domain
                end as domain,
                draw(person_id, 'local_part') as local_part_draw
            from typed
            inner join companies using (fit_rank)
        ),

        addressed as (
            select
                *,
                case
                    when persona = 'personal'
                        then first_slug || '.' || last_slug
                        || (10 + floor(90 * draw(person_id, 'mail_digits')))::integer
                    when local_part_draw < 0.6 then first_slug || '.' || last_slug
                    when local_part_draw < 0.8 then first_slug[1] || last_slug
                    when local_part_draw < 0.9 then first_slug || '_' || last_slug
                    else first_slug || last_slug[1]
                end as local_part
            from employed
        ),

        -- Over the key columns only: a window carries every column it is given.
        namesakes as (
            select
                person_id,
                row_number() over (partition by local_part, domain order by person_id)
                    as namesake_number
            from addressed
        )

        select
            person_id,
            propensity,
            persona,
            first_name,
            last_name,
            -- Namesakes at one domain get a ".2", ".3" suffix, which no plain local part has.
            local_part
            || case when namesake_number > 1 then '.' || namesake_number else '' end
            || '@' || domain as email,
            company,
            {choice_by("seniority_tier", v.TITLES_BY_SENIORITY, "draw(person_id, 'title')")}
                as title,
            {choice_by("seniority_tier", shifted_titles, "draw(person_id, 'title')")}
                as changed_title,
            industry,
            employee_count,
            country,
            {lookup("country", regions)} as region,
            case when draw(person_id, 'has_phone') < 0.65
                then '+' || {lookup("country", dialling_codes)} || ' '
                || lpad(floor(draw(person_id, 'phone') * 1e9)::bigint::varchar, 9, '0')
            end as phone,
            lead_source,
            {choice_by("lead_source", v.FIRST_CAMPAIGNS, "draw(person_id, 'first_campaign')")}
                as first_campaign,
            draw(person_id, 'do_not_email') < 0.02 as is_do_not_email,
            -- Seconds between the person's first lead record and as_of: at least two hours.
            7200 + floor(draw(person_id, 'age') * ({history_seconds} - 7200))::bigint
                as age_seconds,
            source_draw < {SHARE_IN_WEB_FORMS} as is_in_web_forms,
            source_draw < {SHARE_IN_BOTH_SOURCES} or source_draw >= {SHARE_IN_WEB_FORMS}
                as is_in_crm,
            -- A few CRM-only people were logged from a call: a phone, no email, no activity.
            source_draw >= {SHARE_IN_WEB_FORMS} and phone is not null
                and draw(person_id, 'phone_only') < {SHARE_PHONE_ONLY} as is_phone_only
        from addressed
        inner join namesakes using (person_id)
    """)


def lead_file_columns(ids: IdFormat) -> dict[str, str]:
    """The columns of a lead file and how each is written from the file's rows."""
    columns = (
        "email", "first_name", "last_name", "company", "title", "industry", "employee_count",
        "country", "phone", "lead_source", "first_campaign", "is_do_not_email", "created_at",
        "updated_at",
    )  # fmt: skip
    return {"source_lead_id": ids.of("row_index")} | {column: column for column in columns}


def _lead_rows_sql(
    *, people: str, email: str, title: str, updated_age: str, timestamp: str, phone: str
) -> str:
    """The good rows of one lead file: ``row_index`` (the person) numbers the rows and keys
    their draws, ``sort_at`` orders them.

    ``people`` is a query over ``people`` adding ``lead_age``, the seconds from the record's
    creation to as_of; ``updated_age`` is an expression over it.
    """
    return f"""
        select
            person_id as row_index,
            before_as_of(lead_age) as sort_at,
            {email} as email,
            first_name,
            last_name,
            company,
            {title} as title,
            industry,
            employee_count::varchar as employee_count,
            country,
            {phone} as phone,
            lead_source,
            first_campaign,
            is_do_not_email::varchar as is_do_not_email,
            {timestamp}(before_as_of(lead_age)) as created_at,
            {timestamp}(before_as_of({updated_age})) as updated_at
        from ({people})
    """


def create_lead_rows(connection: duckdb.DuckDBPyConnection) -> None:
    """The good rows of ``leads__web_forms`` and ``leads__crm``.

    A web form captures the person as typed (some capitalise their address) and is never
    updated. A person in both files was entered into the CRM after the form fill: a different
    id, the email re-typed (case, surrounding spaces), a changed title and a later update.
    """
    web_forms = _lead_rows_sql(
        people="select *, age_seconds as lead_age from people where is_in_web_forms",
        email="""case when draw(person_id, 'web.email_case') < 0.05
            then upper(email[1]) || email[2:] else email end""",
        title="title",
        updated_age="lead_age",
        timestamp="iso_space",
        phone="null",
    )
    # The CRM record of a person also in web forms is younger than the form fill, by at least
    # a second, so both its created_at and updated_at are later.
    crm = _lead_rows_sql(
        people="""select
                *,
                case when is_in_web_forms
                    then 3600 + floor((age_seconds - 3601) * draw(person_id, 'crm.age'))::bigint
                    else age_seconds
                end as lead_age,
                draw(person_id, 'crm.email') as retype_draw
            from people
            where is_in_crm""",
        email="""case
                when is_phone_only then null
                when not is_in_web_forms then email
                when retype_draw < 0.25 then upper(email)
                when retype_draw < 0.5 then upper(email[1]) || email[2:]
                when retype_draw < 0.7 then '  ' || email || ' '
                when retype_draw < 0.85 then ' ' || upper(email) || ' '
                else email
            end""",
        title="case when is_in_web_forms then changed_title else title end",
        updated_age="floor(lead_age * draw(person_id, 'crm.updated'))::bigint",
        timestamp="iso_t",
        phone="phone",
    )
    connection.execute(f"create or replace table leads__web_forms as {web_forms}")
    connection.execute(f"create or replace table leads__crm as {crm}")


REP_FILE_COLUMNS = {"rep_id": REP_IDS.of("row_index")} | {
    column: column for column in ("name", "email", "region", "segment", "is_active")
}


def create_reps(connection: duckdb.DuckDBPyConnection) -> None:
    """The sales team: ``REP_TERRITORIES`` with names drawn like everyone else's."""
    territories = ", ".join(
        f"({index}, {literal(region)}, {literal(segment)}, {str(is_active).lower()})"
        for index, (region, segment, is_active) in enumerate(v.REP_TERRITORIES)
    )
    connection.execute(f"""
        create or replace table reps__crm as
        with named as (
            select
                *,
                {choice(v.FIRST_NAMES, "draw(row_index, 'rep.first_name')")} as first_name,
                {choice(_slugs(v.FIRST_NAMES), "draw(row_index, 'rep.first_name')")} as first_slug,
                {choice(v.LAST_NAMES, "draw(row_index, 'rep.last_name')")} as last_name,
                {choice(_slugs(v.LAST_NAMES), "draw(row_index, 'rep.last_name')")} as last_slug
            from (values {territories}) as territories (row_index, region, segment, is_active)
        )

        select
            row_index,
            row_index as sort_at,
            first_name || ' ' || last_name as name,
            -- Namesakes on the team are told apart by a digit.
            first_slug || '.' || last_slug
            || case when count(*) over (partition by first_slug, last_slug) > 1
                then (row_index + 1)::varchar else '' end
            || '@{v.OUR_DOMAIN}' as email,
            region,
            segment,
            is_active::varchar as is_active
        from named
    """)
