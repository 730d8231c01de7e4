"""``leadflow templates preview --all``: every step of every track, for several sample leads.

The sample leads live in ``templates/sample_leads.yml`` (marketers add their own). Each lead is
turned into a template context the way a nurture queue row is (``build_context``, with its
fallbacks), so the gallery shows what "no first name" or a name full of markup really gives.
The pages are self-contained HTML: the email sits in an ``<iframe srcdoc>`` (its styles stay its
own), with the subject, preheader and follow-up task above it and the plain-text part below.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import yaml

from flows.email.context import build_context, load_sample_context
from flows.email.render import RenderedEmail, TemplateRenderer
from flows.email.templates import context_for_step
from flows.email.tracks import LintProblem, NurtureStep, TemplateError, load_tracks
from flows.sales.tasks import FOLLOW_UP_POLICIES

SAMPLE_LEADS_FILE = "sample_leads.yml"
LEAD_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
# Queue columns a sample lead may set (the ones build_context reads), besides id and description.
LEAD_KEYS = (
    "email",
    "first_name",
    "last_name",
    "company",
    "title",
    "owner_name",
    "owner_email",
)
INDEX_FILE = "index.html"


@dataclass(frozen=True)
class SampleLead:
    id: str
    description: str
    row: dict[str, Any]  # as a fct_nurture_queue row


@dataclass(frozen=True)
class GalleryEntry:
    lead: SampleLead
    step: NurtureStep
    page: str  # relative to the gallery folder
    email: RenderedEmail | None
    error: str | None


@dataclass(frozen=True)
class Gallery:
    index: Path
    entries: list[GalleryEntry]

    @property
    def failures(self) -> list[GalleryEntry]:
        return [entry for entry in self.entries if entry.error is not None]


def _lead_problems(index: int, item: Any, seen: set[str]) -> list[str]:
    if not isinstance(item, dict):
        return [f"entry {index} must be `key: value` lines starting with `- id: ...`"]
    problems = []
    lead_id = str(item.get("id", ""))
    if not LEAD_ID.fullmatch(lead_id):
        problems.append(
            f"entry {index}: `id` is {item.get('id')!r}; give lower-case letters, digits, - or _ "
            "(it names the gallery folder), e.g. `id: no-company`"
        )
    elif lead_id in seen:
        problems.append(f"entry {index}: `id: {lead_id}` is used twice; give each lead its own")
    unknown = sorted(set(item) - {"id", "description", *LEAD_KEYS})
    if unknown:
        problems.append(
            f"entry {index} ({lead_id}): unknown key(s) {', '.join(unknown)}; allowed: "
            f"id, description, {', '.join(LEAD_KEYS)}"
        )
    if not str(item.get("email") or "").strip():
        problems.append(f"entry {index} ({lead_id}): add `email:` (the lead's address)")
    return problems


def load_sample_leads(templates_dir: Path) -> list[SampleLead]:
    """The sample leads; raises TemplateError listing every problem in the file."""
    file = SAMPLE_LEADS_FILE
    path = templates_dir / file
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise TemplateError.from_problems(
            LintProblem(file, None, "missing: add a list of sample leads (see README.md)")
        ) from None
    except yaml.YAMLError as error:
        raise TemplateError.from_problems(
            LintProblem(file, None, f"invalid YAML ({error}): check the indentation")
        ) from None
    if not isinstance(data, list) or not data:
        raise TemplateError.from_problems(
            LintProblem(file, None, "must be a list of leads, each starting with `- id: ...`")
        )
    problems: list[str] = []
    seen: set[str] = set()
    for index, item in enumerate(data, start=1):
        problems += _lead_problems(index, item, seen)
        if isinstance(item, dict):
            seen.add(str(item.get("id", "")))
    if problems:
        raise TemplateError.from_problems(
            *(LintProblem(file, None, problem) for problem in problems)
        )
    return [
        SampleLead(
            id=str(item["id"]),
            description=str(item.get("description") or ""),
            row={key: item.get(key) for key in LEAD_KEYS},
        )
        for item in data
    ]


_PAGES = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #1f2933; }
table { border-collapse: collapse; margin-bottom: 1rem; }
th, td { border: 1px solid #cbd2d9; padding: .35rem .6rem; text-align: left; vertical-align: top; }
th { background: #f0f4f8; }
.error { color: #b42318; white-space: pre-wrap; }
iframe { width: 100%; height: 70vh; border: 1px solid #cbd2d9; }
pre { white-space: pre-wrap; background: #f8fafc; padding: 1rem; border: 1px solid #cbd2d9; }
"""

INDEX_PAGE = _PAGES.from_string(
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Nurture email gallery</title>
<style>{{ style }}</style></head><body>
<h1>Nurture email gallery</h1>
<p>Every step of every track, rendered for each sample lead of templates/{{ leads_file }}.
{% if failures %}<strong class="error">{{ failures }} email(s) do not render: see the red
cells, or run <code>leadflow templates lint</code>.</strong>{% endif %}</p>
<table>
<tr><th>track</th><th>step</th><th>delay</th>
{% for lead in leads %}<th>{{ lead.id }}<br><small>{{ lead.description }}</small></th>{% endfor %}
</tr>
{% for step, cells in rows %}
<tr><td>{{ step.track }}</td><td>{{ step.step }}</td><td>{{ step.delay_days }} days</td>
{% for entry in cells %}<td><a href="{{ entry.page }}">
{%- if entry.email %}{{ entry.email.subject }}{% else %}<span class="error">does not render</span>
{%- endif %}</a></td>{% endfor %}
</tr>
{% endfor %}
</table>
</body></html>
"""
)

EMAIL_PAGE = _PAGES.from_string(
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{{ entry.step.track }} step {{ entry.step.step }} - {{ entry.lead.id }}</title>
<style>{{ style }}</style></head><body>
<p><a href="../{{ index }}">All emails</a></p>
<h1>{{ entry.step.track }}, step {{ entry.step.step }}</h1>
<table>
<tr><th>sample lead</th><td>{{ entry.lead.id }}: {{ entry.lead.description }}</td></tr>
<tr><th>file</th><td>templates/{{ entry.step.template }}</td></tr>
<tr><th>sent</th><td>{{ entry.step.delay_days }} days after
{% if entry.step.step == 1 %}entering the track{% else %}step {{ entry.step.step - 1 }}{% endif %}
</td></tr>
{% if entry.email %}
<tr><th>subject</th><td>{{ entry.email.subject }}</td></tr>
<tr><th>preheader</th><td>{{ entry.email.preheader }}</td></tr>
<tr><th>follow-up task</th><td>{{ entry.email.follow_up_title }}<br>
<small>{% if entry.step.follow_up_when == "never" %}no task (follow_up_when: never){% else -%}
made {{ follow_up_policies[entry.step.follow_up_when] }}, due {{ entry.step.follow_up_due_days }}
days after {{ "the send" if entry.step.follow_up_when == "always" else "that" }}{% endif %}</small>
</td></tr>
{% endif %}
</table>
{% if entry.email %}
<iframe title="The email" sandbox srcdoc="{{ entry.email.html }}"></iframe>
<h2>Plain-text part</h2>
<pre>{{ entry.email.text }}</pre>
{% else %}
<p class="error">{{ entry.error }}</p>
{% endif %}
</body></html>
"""
)


def _render(
    renderer: TemplateRenderer, step: NurtureStep, context: Mapping[str, Any]
) -> tuple[RenderedEmail | None, str | None]:
    try:
        return renderer.render(step, context_for_step(context, step)), None
    except TemplateError as error:
        return None, str(error)


def render_gallery(
    templates_dir: Path, out_dir: Path, leads: Sequence[SampleLead] | None = None
) -> Gallery:
    """Write a page per (sample lead, step) and an index linking them all.

    An email that does not render gets a page saying why; the others are still written.
    Raises TemplateError when the tracks or the sample files themselves cannot be read.
    """
    tracks = load_tracks(templates_dir)
    leads = list(leads) if leads is not None else load_sample_leads(templates_dir)
    sample = load_sample_context(templates_dir)
    renderer = TemplateRenderer(templates_dir)
    steps = [step for track in tracks.values() for step in track.steps]
    entries: list[GalleryEntry] = []
    for lead in leads:
        context = build_context(
            lead.row,
            unsubscribe_url=sample["unsubscribe_url"],
            sender_name=sample["sender"]["name"],
            sender_address=sample["sender"]["address"],
        )
        for step in steps:
            email, error = _render(renderer, step, context)
            page = f"{lead.id}/{step.track}-{step.step:02d}.html"
            entries.append(GalleryEntry(lead, step, page, email, error))
    for entry in entries:
        path = out_dir / entry.page
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            EMAIL_PAGE.render(
                entry=entry, style=STYLE, index=INDEX_FILE, follow_up_policies=FOLLOW_UP_POLICIES
            ),
            encoding="utf-8",
        )
    rows = [(step, [entry for entry in entries if entry.step == step]) for step in steps]
    index = out_dir / INDEX_FILE
    index.write_text(
        INDEX_PAGE.render(
            leads=leads,
            rows=rows,
            style=STYLE,
            leads_file=SAMPLE_LEADS_FILE,
            failures=sum(entry.error is not None for entry in entries),
        ),
        encoding="utf-8",
    )
    return Gallery(index, entries)
