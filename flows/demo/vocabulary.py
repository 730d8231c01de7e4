"""The reference data the demo generator draws from.

Some of these lists are part of the shared definitions, not just decoration: the dbt seeds that
score leads should recognise the same competitor, personal and student email domains, the same
title patterns and the same served countries, so a generated dataset exercises every rule.

- ``COMPETITOR_DOMAINS``: employees of competitors (a negative fit signal; never hand off).
- ``PERSONAL_EMAIL_DOMAINS``: free mailboxes (a weak negative fit signal).
- ``UNIVERSITIES``: students sign up with a ``.edu`` address and the title ``Student``.
- ``TITLES_BY_SENIORITY``: every C-level title contains ``Chief`` or ``CEO``, every VP title
  ``VP`` or ``Vice President``, every director title ``Director`` or ``Head of``, every manager
  title ``Manager``, every intern title ``Intern``, every student title ``Student``; individual
  contributor titles contain none of these words.
- ``COUNTRY_REGIONS``: the served countries and their sales region (what the ``country_regions``
  seed should map); ``UNSERVED_COUNTRIES`` have no sales coverage and map to no region.
"""

from __future__ import annotations

from typing import Final

FIRST_NAMES: Final = (
    "James", "Mary", "Olivia", "Liam", "Noah", "Emma", "Sophia", "Ethan", "Ava", "Mason",
    "Charlotte", "Amelia", "George", "Isla", "Jack", "Oliver", "Harper", "Daniel", "Grace",
    "Samuel", "Mateo", "Lucía", "Camila", "Valentina", "Diego", "Santiago", "Gabriel", "Isabela",
    "João", "Ana", "Tomás", "Martina", "Renata", "Nicolás", "Luca", "Giulia", "Marco", "Francesca",
    "Lukas", "Hannah", "Jonas", "Lena", "Felix", "Emilie", "Léa", "Louis", "Chloé", "Hugo",
    "Manon", "Sofía", "Javier", "Carmen", "Pablo", "Elena", "Anna", "Jakub", "Zofia", "Piotr",
    "Lars", "Ingrid", "Erik", "Astrid", "Freya", "Aoife", "Seán", "Priya", "Arjun", "Ananya",
    "Rohan", "Kavya", "Wei", "Mei", "Jun", "Hiroshi", "Yuki", "Haruto", "Sakura", "Min-jun",
    "Seo-yeon", "Ji-woo", "Aisha", "Omar", "Fatima", "Youssef", "Layla", "Noura", "Kwame",
    "Amara", "Thabo", "Zanele", "Ngozi", "Chinedu", "David", "Sarah", "Michael", "Laura",
    "Thomas", "Julia", "Daniela", "Andrés",
)  # fmt: skip

LAST_NAMES: Final = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez",
    "Martinez", "Hernández", "López", "González", "Wilson", "Anderson", "Taylor", "Moore",
    "Jackson", "Martin", "Lee", "Thompson", "White", "Harris", "Clark", "Lewis", "Walker", "Hall",
    "Young", "King", "Wright", "Scott", "Green", "Baker", "Nguyen", "Tran", "Kim", "Park", "Chen",
    "Wang", "Li", "Zhang", "Liu", "Tanaka", "Sato", "Suzuki", "Takahashi", "Patel", "Sharma",
    "Singh", "Gupta", "Kumar", "Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer",
    "Wagner", "Becker", "Dubois", "Lefèvre", "Moreau", "Laurent", "Bernard", "Rossi", "Russo",
    "Ferrari", "Esposito", "Bianchi", "Romano", "Silva", "Santos", "Oliveira", "Souza", "Pereira",
    "Costa", "Fernández", "Jiménez", "Ruiz", "Kowalski", "Nowak", "Wiśniewski", "Jansen",
    "de Vries", "van Dijk", "Bakker", "Andersson", "Johansson", "Nilsson", "Hansen", "Larsen",
    "O'Brien", "Murphy", "Kelly", "Walsh", "Okafor", "Mensah", "Naidoo", "Haddad", "Khalil",
    "Cohen", "Levi", "Yilmaz", "Kaya", "Novak",
)  # fmt: skip

TITLES_BY_SENIORITY: Final[dict[str, tuple[str, ...]]] = {
    "c_level": (
        "Chief Executive Officer", "Chief Marketing Officer", "Chief Revenue Officer",
        "Chief Operating Officer", "Chief Technology Officer", "Founder & CEO",
    ),
    "vp": (
        "VP of Marketing", "VP Sales", "Vice President, Revenue Operations",
        "VP of Demand Generation", "SVP Growth", "VP Customer Success",
    ),
    "director": (
        "Director of Marketing", "Marketing Operations Director", "Director of Sales",
        "Head of Growth", "Director, Demand Generation", "Head of Revenue Operations",
    ),
    "manager": (
        "Marketing Manager", "Sales Manager", "Demand Generation Manager",
        "Marketing Operations Manager", "Product Marketing Manager", "CRM Manager",
    ),
    "individual_contributor": (
        "Marketing Specialist", "Sales Development Representative", "Account Executive",
        "Data Analyst", "Marketing Coordinator", "Content Strategist", "Software Engineer",
        "Revenue Operations Analyst", "Growth Marketer",
    ),
    "intern": ("Marketing Intern", "Sales Intern", "Summer Intern"),
    "student": ("Student", "Graduate Student", "MBA Student"),
}  # fmt: skip

# Target industries of the ideal customer profile: better-fitting companies are likelier to be
# in one of these. The words make company names that sound like the industry.
ICP_INDUSTRIES: Final[dict[str, tuple[str, ...]]] = {
    "Software": ("Software", "Cloud", "Data", "Labs", "Analytics", "Logic", "Networks"),
    "Financial Services": ("Capital", "Financial", "Payments", "Insurance", "Lending"),
    "Marketing & Advertising": ("Media", "Marketing", "Interactive", "Studios", "Creative"),
    "Professional Services": ("Consulting", "Partners", "Advisors", "Solutions"),
    "Healthcare": ("Health", "Medical", "Care", "Diagnostics"),
}  # fmt: skip
OTHER_INDUSTRIES: Final[dict[str, tuple[str, ...]]] = {
    "Manufacturing": ("Manufacturing", "Materials", "Motors", "Works", "Industries"),
    "Retail": ("Retail", "Goods", "Outfitters", "Markets"),
    "Logistics": ("Logistics", "Freight", "Supply", "Shipping"),
    "Hospitality": ("Hotels", "Hospitality", "Foods", "Travel"),
    "Non-profit": ("Foundation", "Alliance", "Trust"),
}  # fmt: skip

COMPANY_PREFIXES: Final = (
    "Blue", "Bright", "Summit", "North", "Silver", "Iron", "Cedar", "Harbor", "Granite", "Maple",
    "Atlas", "Nimbus", "Apex", "Vertex", "Quantum", "Evergreen", "Red Oak", "Clearwater", "Stone",
    "Falcon", "Lumen", "Nova", "Orbit", "Pioneer", "Pacific", "Keystone", "Beacon", "Horizon",
    "Crescent", "Sterling", "Meridian", "Cobalt", "Aurora", "Helix", "Polar", "Sparrow", "Willow",
    "Juniper", "Copper", "Tidal", "Crimson", "Golden", "Alpine", "Prairie", "Canyon", "Riverbend",
    "Lakeside", "Skyline", "Bluebird", "Kestrel", "Oakridge", "Westfield", "Eastgate", "Ironwood",
    "Northstar", "Redwood", "Sequoia", "Brightwater", "Greenfield", "Highland",
)  # fmt: skip
# Legal suffix and top-level domain -> share of companies in %; ", Inc." exercises CSV quoting.
COMPANY_LEGAL_SUFFIXES: Final[dict[str, float]] = {
    "": 50, " Inc.": 12, ", Inc.": 10, " LLC": 8, " Ltd": 8, " GmbH": 6, " Group": 6,
}  # fmt: skip
COMPANY_TLDS: Final[dict[str, float]] = {
    ".com": 60, ".io": 12, ".co": 8, ".net": 6, ".co.uk": 8, ".de": 6,
}  # fmt: skip

PERSONAL_EMAIL_DOMAINS: Final = ("gmail.com", "yahoo.com", "hotmail.com", "outlook.com")

# (company name, email domain, employee count) of the competitors we invented.
COMPETITORS: Final = (
    ("RivalFlow", "rivalflow.com", 420),
    ("PipeDash", "pipedash.io", 85),
    ("FunnelForge", "funnelforge.com", 1300),
    ("LeadLoop", "leadloop.io", 60),
)
COMPETITOR_DOMAINS: Final = tuple(domain for _, domain, _ in COMPETITORS)

# (university name, email domain).
UNIVERSITIES: Final = (
    ("Northfield State University", "northfield.edu"),
    ("Lakeshore College", "lakeshore.edu"),
    ("University of Westbrook", "westbrook.edu"),
    ("Eastvale Institute of Technology", "eastvale.edu"),
)

# Served country (ISO 3166 alpha-2) -> (sales region, international dialling code, weight in %).
COUNTRY_REGIONS: Final[dict[str, tuple[str, str, float]]] = {
    "US": ("NA", "1", 37), "CA": ("NA", "1", 6),
    "GB": ("EMEA", "44", 8), "DE": ("EMEA", "49", 6), "FR": ("EMEA", "33", 4),
    "NL": ("EMEA", "31", 2), "ES": ("EMEA", "34", 2), "IT": ("EMEA", "39", 2),
    "SE": ("EMEA", "46", 1), "IE": ("EMEA", "353", 1), "CH": ("EMEA", "41", 1),
    "PL": ("EMEA", "48", 1), "ZA": ("EMEA", "27", 1), "AE": ("EMEA", "971", 1),
    "AU": ("APAC", "61", 4), "IN": ("APAC", "91", 4), "JP": ("APAC", "81", 2),
    "SG": ("APAC", "65", 2), "NZ": ("APAC", "64", 1), "KR": ("APAC", "82", 1),
    "BR": ("LATAM", "55", 3), "MX": ("LATAM", "52", 3), "AR": ("LATAM", "54", 1),
    "CL": ("LATAM", "56", 1), "CO": ("LATAM", "57", 1),
}  # fmt: skip
# Markets without a sales team yet: leads come in, but no region (and no rep) covers them.
UNSERVED_COUNTRIES: Final[dict[str, tuple[str, float]]] = {
    "NG": ("234", 1),
    "KE": ("254", 0.5),
    "PK": ("92", 0.5),
    "VN": ("84", 1),
}
SALES_REGIONS: Final = ("NA", "EMEA", "APAC", "LATAM")

# Channel -> share of leads in % for (low, high) propensity: referrals, events and webinars
# bring better leads than paid search and outbound.
LEAD_SOURCE_MIX: Final[dict[str, tuple[float, float]]] = {
    "paid_search": (24, 14), "organic": (24, 20), "content": (17, 15), "webinar": (9, 16),
    "event": (6, 12), "referral": (4, 13), "outbound": (16, 10),
}  # fmt: skip
FIRST_CAMPAIGNS: Final[dict[str, tuple[str, ...]]] = {
    "paid_search": ("Google Ads - Brand", "Google Ads - Lead Scoring", "LinkedIn Ads - RevOps"),
    "organic": ("Website - Organic", "Blog - Lead Nurturing Guide"),
    "content": (
        "Ebook - State of Lead Scoring", "Whitepaper - Sales and Marketing SLAs",
        "Template - Nurture Playbook",
    ),
    "webinar": ("Webinar - MQL to SQL Handoff", "Webinar - Pipeline Analytics 101"),
    "event": ("Trade Show - RevOps Summit", "Roadshow - London", "Roadshow - New York"),
    "referral": ("Customer Referral Program", "Partner Referral - Agencies"),
    "outbound": ("Outbound - Enterprise ICP", "Outbound - Mid-Market"),
}  # fmt: skip

EMAIL_CAMPAIGNS: Final = (
    "Newsletter - Monthly", "Nurture - Welcome Series", "Product Update",
    "Webinar Invite - MQL to SQL Handoff", "Ebook Promo - State of Lead Scoring",
)  # fmt: skip
WEBINARS: Final = ("Webinar - MQL to SQL Handoff", "Webinar - Pipeline Analytics 101")
WEBSITE: Final = "https://www.leadflow.example"
SITE_PAGES: Final = (
    "/", "/product", "/product/scoring", "/product/nurture", "/customers", "/blog/mql-vs-sql",
    "/blog/lead-scoring-101", "/blog/sales-marketing-sla", "/integrations", "/about",
)  # fmt: skip
CONTENT_PAGES: Final = (
    "/resources/state-of-lead-scoring", "/resources/sales-marketing-sla-template",
    "/resources/nurture-playbook",
)  # fmt: skip
FORM_PAGES: Final = ("/contact", "/newsletter", "/trial")

# Share of events (in %) by type, for the everyday mix and for high-intent moments.
EVERYDAY_EVENT_MIX: Final[dict[str, float]] = {
    "email_open": 44, "email_click": 14, "page_view": 28, "content_download": 7,
    "form_fill": 3, "unsubscribe": 0.4, "bounce": 0.25, "spam_report": 0.04,
}  # fmt: skip
HIGH_INTENT_EVENT_MIX: Final[dict[str, float]] = {
    "pricing_page_view": 60,
    "webinar_attended": 28,
    "demo_request": 12,
}
# How much one event of each type moves a person towards buying, in the demo's world: what a
# fit of the points can learn from the outcomes. The shipped engagement points misjudge it as
# teams often do: opens (inflated by mail privacy proxies), page views and downloads (research,
# not intent) earn points but say nothing; a pricing page view says nearly as much as a demo
# request.
BUYING_SIGNAL_BY_EVENT_TYPE: Final[dict[str, float]] = {
    "demo_request": 3.0, "pricing_page_view": 2.0, "webinar_attended": 1.0, "form_fill": 0.5,
    "email_click": 0.2, "content_download": 0.0, "page_view": 0.0, "email_open": 0.0,
}  # fmt: skip

# Final outcome -> the outcomes sales records on the way there, in order.
OUTCOME_PATHS: Final[dict[str, tuple[str, ...]]] = {
    "accepted": ("accepted",),
    "rejected": ("rejected",),
    "no_response": ("no_response",),
    "opportunity": ("accepted", "opportunity"),
    "won": ("accepted", "opportunity", "won"),
    "lost": ("accepted", "opportunity", "lost"),
}
REJECTION_REASONS: Final[dict[str, float]] = {
    "not_ready": 35, "no_budget": 20, "bad_timing": 25, "bad_fit": 20,
}  # fmt: skip
LOSS_REASONS: Final[dict[str, float]] = {"competitor": 60, "no_budget": 40}

# (region, segment, is_active) of each sales rep: one has left the company.
REP_TERRITORIES: Final = (
    ("NA", "smb", True), ("NA", "mid_market", True), ("NA", "enterprise", True),
    ("NA", "mid_market", True), ("EMEA", "smb", True), ("EMEA", "mid_market", True),
    ("EMEA", "enterprise", True), ("EMEA", "smb", False), ("APAC", "smb", True),
    ("APAC", "enterprise", True), ("LATAM", "mid_market", True), ("LATAM", "smb", True),
)  # fmt: skip
OUR_DOMAIN: Final = "leadflow.example"
