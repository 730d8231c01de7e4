"""Rendering nurture emails: content, escaping, the sandbox, header safety, error locations."""

from __future__ import annotations

import markupsafe
import pytest

from flows.email.context import build_context, personal_values, shared_context
from flows.email.message import substitute
from flows.email.render import TemplateRenderer, escape_html, shape_values
from flows.email.templates import preview
from flows.email.tracks import TemplateError, load_tracks

UNSUBSCRIBE = "https://leadflow.example/unsubscribe?key=abc&lang=en"


def render_welcome(templates_dir, row):
    step = load_tracks(templates_dir)["warm_up"].steps[0]
    context = build_context(
        row,
        unsubscribe_url=UNSUBSCRIBE,
        sender_name="LeadFlow Demo",
        sender_address="1 Main St, Springfield",
    )
    return TemplateRenderer(templates_dir).render(step, context)


def test_a_step_renders_subject_preheader_body_text_and_follow_up(shipped_templates, queue_row):
    email = render_welcome(shipped_templates, queue_row)
    assert email.subject == "Welcome, Ana: what to expect from us"
    assert email.preheader.startswith("One useful idea per email")
    assert email.follow_up_title == "Research Acme Freight: is Ana a fit for us?"
    assert email.html.startswith("<!DOCTYPE html>")  # the front matter leaves no trace
    assert "<p>Hi Ana,</p>" in email.html
    assert "Acme Freight" in email.html
    assert "<title>Welcome, Ana: what to expect from us</title>" in email.html
    assert "Sam Lee<br>LeadFlow Demo" in email.html
    # The footer's link, HTML-escaped in the attribute.
    assert 'href="https://leadflow.example/unsubscribe?key=abc&amp;lang=en"' in email.html


def test_the_text_part_is_readable_and_keeps_links(shipped_templates, queue_row):
    text = render_welcome(shipped_templates, queue_row).text
    assert text.startswith("LeadFlow Demo\n\nHi Ana,\n\n")
    assert "- the single change that most speeds up follow-up" in text
    assert (
        "Read the field guide (https://leadflow.example/guides/sales-marketing-alignment)" in text
    )
    assert f"Unsubscribe ({UNSUBSCRIBE})" in text
    assert "1 Main St, Springfield" in text
    assert "<" not in text and "font-family" not in text
    # The preheader is hidden in the HTML, so it is not part of the readable text either.
    assert "One useful idea per email" not in text


def test_missing_lead_details_read_naturally(shipped_templates, queue_row):
    queue_row.update(first_name=None, company="  ", owner_name=None)
    email = render_welcome(shipped_templates, queue_row)
    assert email.subject == "Welcome, there: what to expect from us"
    assert "<p>Hi there,</p>" in email.html
    assert "at your team whether or not" in email.text
    assert email.follow_up_title == "Research your team: is there a fit for us?"
    # Without an owner the company signs, once.
    assert "<p>LeadFlow Demo</p>" in email.html


@pytest.mark.parametrize(
    "first_name",
    ["<script>alert(1)</script>", '"><img src=x onerror=alert(1)>', "Tom & <b>Jerry</b>"],
)
def test_lead_supplied_text_is_escaped_in_html(shipped_templates, queue_row, first_name):
    queue_row["first_name"] = first_name
    email = render_welcome(shipped_templates, queue_row)
    assert first_name not in email.html
    assert "<script>" not in email.html and "<img" not in email.html and "<b>" not in email.html
    assert "&lt;" in email.html
    # Plain text is not HTML: the subject and the text part show exactly what the lead typed.
    assert email.subject == f"Welcome, {first_name}: what to expect from us"
    assert f"Hi {first_name}," in email.text


def test_line_breaks_cannot_reach_the_subject(shipped_templates, queue_row):
    queue_row["first_name"] = "Ana\r\nBcc: everyone@example.com"
    assert "\r" not in render_welcome(shipped_templates, queue_row).subject
    # Even when a context is built by hand, the rendered subject is one line.
    step = load_tracks(shipped_templates)["warm_up"].steps[0]
    context = build_context(
        queue_row, unsubscribe_url=UNSUBSCRIBE, sender_name="S", sender_address="A"
    )
    context["lead"]["first_name"] = "Ana\r\nBcc: everyone@example.com\n"
    email = TemplateRenderer(shipped_templates).render(step, context)
    assert "\n" not in email.subject and "\r" not in email.subject
    assert email.subject == "Welcome, Ana Bcc: everyone@example.com : what to expect from us"
    assert "\n" not in email.follow_up_title


def test_access_to_python_internals_is_a_clear_error(templates_copy, edit, sample_context):
    edit(
        templates_copy / "tracks/warm_up/01-welcome.html",
        "<p>Hi {{ lead.first_name }},</p>",
        "<p>Hi {{ lead.first_name.__class__.__mro__ }},</p>",
    )
    step = load_tracks(templates_copy)["warm_up"].steps[0]
    with pytest.raises(TemplateError) as raised:
        TemplateRenderer(templates_copy).render(step, sample_context)
    message = str(raised.value)
    assert message.startswith("tracks/warm_up/01-welcome.html:11: not allowed in a template")
    assert "__class__" in message


def test_the_sandbox_forbids_changing_the_context(templates_copy, edit, sample_context):
    edit(
        templates_copy / "tracks/warm_up/01-welcome.html",
        "<p>Hi {{ lead.first_name }},</p>",
        "<p>Hi {{ lead.update({'first_name': 'x'}) }},</p>",
    )
    step = load_tracks(templates_copy)["warm_up"].steps[0]
    with pytest.raises(TemplateError, match="not allowed in a template"):
        TemplateRenderer(templates_copy).render(step, sample_context)
    assert sample_context["lead"]["first_name"] == "Priya"


def test_an_unknown_variable_is_an_error_naming_file_and_line(templates_copy, edit, sample_context):
    edit(
        templates_copy / "tracks/education/02-one-definition.html",
        "{{ lead.company }}, the root cause",
        "{{ lead.compnay }}, the root cause",
    )
    step = load_tracks(templates_copy)["education"].steps[1]
    with pytest.raises(TemplateError) as raised:
        TemplateRenderer(templates_copy).render(step, sample_context)
    assert str(raised.value).startswith(
        "tracks/education/02-one-definition.html:14: unknown variable"
    )
    assert "compnay" in str(raised.value)


def test_an_error_in_a_partial_names_the_partial(templates_copy, edit, sample_context):
    edit(templates_copy / "partials/_footer.html", "{{ sender.address }}", "{{ sender.adress }}")
    step = load_tracks(templates_copy)["reengage"].steps[0]
    with pytest.raises(TemplateError, match=r"^partials/_footer.html:7: unknown variable"):
        TemplateRenderer(templates_copy).render(step, sample_context)


def test_an_error_in_the_subject_names_the_key(templates_copy, edit, sample_context):
    edit(
        templates_copy / "tracks/warm_up/01-welcome.html", "{{ lead.first_name }}:", "{{ lead. }}:"
    )
    step = load_tracks(templates_copy)["warm_up"].steps[0]
    with pytest.raises(TemplateError, match=r"01-welcome.html: in `subject`: Jinja syntax error"):
        TemplateRenderer(templates_copy).render(step, sample_context)


def test_preview_accepts_paths_under_templates_or_the_working_directory(
    shipped_templates, sample_context, monkeypatch
):
    by_template_path = preview(
        shipped_templates, "tracks/reengage/03-close-the-file.html", sample_context
    )
    monkeypatch.chdir(shipped_templates.parent)
    by_checkout_path = preview(
        shipped_templates, "templates/tracks/reengage/03-close-the-file.html", sample_context
    )
    assert by_template_path == by_checkout_path
    assert by_template_path.subject == "Should I close your file, Priya?"
    # Preview renders the track and step of the file, whatever the context file says.
    assert sample_context["track"] == {"name": "warm_up", "step": 1}


def test_preview_of_a_file_that_is_not_an_email_says_what_to_give(
    shipped_templates, sample_context
):
    for path in ("tracks/warm_up/09-nothing.html", "partials/_header.html", "../pyproject.toml"):
        with pytest.raises(
            TemplateError, match=r"give a path like tracks/warm_up/01-welcome\.html"
        ):
            preview(shipped_templates, path, sample_context)


# Rendering once per shape: every lead's email must equal what rendering it alone gives.

SHARED_SENDER = {"sender_name": "LeadFlow Demo", "sender_address": "1 Main St, Springfield"}
VARIED_LEADS = [
    {},  # the fixture's lead, as it is
    {"company": "AT&T <script>alert(1)</script>", "first_name": 'Zoë "Z" O\'Neil'},
    {"first_name": None, "last_name": "", "company": None, "title": "", "owner_name": None},
    {"owner_name": "LeadFlow Demo", "owner_email": None},  # signed by the company itself
    {"first_name": "Ann\r\nBcc: x@y.z", "title": "  Head   of\tSales "},
    {"first_name": "-lf_lead_company-", "company": "-lf_text_lead_first_name-"},  # tag lookalikes
]


def per_shape(renderer, step, row, unsubscribe_url=UNSUBSCRIBE):
    """What the dispatch sends this lead: the shape's content with its substitutions."""
    values = personal_values(
        row, unsubscribe_url=unsubscribe_url, sender_name=SHARED_SENDER["sender_name"]
    )
    shared = shared_context(step.track, step.step, **SHARED_SENDER)
    shape = renderer.render_shape(step, shared, shape_values(renderer.shape_fields(step), values))
    personal = shape.personalize(values)
    html = substitute(shape.html, personal.substitutions)
    text = substitute(shape.text, personal.substitutions)
    return shape, personal, html, text


@pytest.mark.parametrize("changes", VARIED_LEADS, ids=range(len(VARIED_LEADS)))
def test_every_shipped_step_rendered_per_shape_equals_a_render_per_lead(
    shipped_templates, queue_row, changes
):
    renderer = TemplateRenderer(shipped_templates)
    for track in load_tracks(shipped_templates).values():
        for step in track.steps:
            row = {**queue_row, **changes, "nurture_track": step.track, "next_step": step.step}
            alone = renderer.render(
                step, build_context(row, unsubscribe_url=UNSUBSCRIBE, **SHARED_SENDER)
            )
            _, personal, html, text = per_shape(renderer, step, row)
            assert (personal.subject, html, text) == (alone.subject, alone.html, alone.text)
            assert personal.follow_up_title == alone.follow_up_title


def test_lead_text_arrives_escaped_in_html_and_raw_in_text(shipped_templates, queue_row):
    renderer = TemplateRenderer(shipped_templates)
    step = load_tracks(shipped_templates)["warm_up"].steps[0]
    row = {**queue_row, "company": "AT&T <script>x</script>"}
    shape, personal, html, text = per_shape(renderer, step, row)
    assert "AT&T" not in shape.html and "-lf_lead_company-" in shape.html
    assert personal.substitutions["-lf_lead_company-"] == "AT&amp;T &lt;script&gt;x&lt;/script&gt;"
    assert personal.substitutions["-lf_text_lead_company-"] == "AT&T <script>x</script>"
    assert "<script>" not in html and "AT&amp;T &lt;script&gt;" in html
    assert "AT&T <script>x</script>" in text


def test_the_shipped_signature_makes_the_rep_name_a_shape_field(shipped_templates):
    renderer = TemplateRenderer(shipped_templates)
    for track in load_tracks(shipped_templates).values():
        for step in track.steps:
            # partials/_signature.html compares rep.name with sender.name.
            assert renderer.shape_fields(step) == {"rep.name"}


def test_a_condition_on_a_lead_field_groups_leads_by_its_value(templates_copy, edit, queue_row):
    path = templates_copy / "tracks/warm_up/01-welcome.html"
    edit(path, "<p>Hi {{ lead.first_name }},</p>",
         "<p>Hi {{ lead.first_name }},{% if lead.title %} as {{ lead.title|lower }}{% endif %}</p>")  # fmt: skip
    renderer = TemplateRenderer(templates_copy)
    step = load_tracks(templates_copy)["warm_up"].steps[0]
    assert renderer.shape_fields(step) == {"lead.title", "rep.name"}
    shapes = set()
    for title in ("CTO", "", "CTO", "VP"):
        row = {**queue_row, "title": title, "first_name": f"Lead{len(shapes)}"}
        alone = renderer.render(
            step, build_context(row, unsubscribe_url=UNSUBSCRIBE, **SHARED_SENDER)
        )
        shape, _, html, text = per_shape(renderer, step, row)
        assert (html, text) == (alone.html, alone.text)
        shapes.add(shape.html)
    assert len(shapes) == 3  # CTO, none, VP: the two CTOs share one rendering


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ("{{ lead.first_name }} {{ lead['company'] }}", set()),
        ("{{ lead.first_name|upper }}", {"lead.first_name"}),
        ("{% for c in lead.company %}{{ c }}{% endfor %}", {"lead.company"}),
        ("{{ lead.title if lead.title else 'friend' }}", {"lead.title"}),
        ("{% filter upper %}{{ lead.first_name }}{% endfilter %}", {"lead.first_name"}),
        ("{% set n = lead.first_name %}{{ n }}", {"lead.first_name"}),
        ("{{ lead }}", {"lead.first_name", "lead.last_name", "lead.company", "lead.title",
                        "lead.email"}),
        ("{% if email.subject|length > 40 %}long{% endif %}", {"lead.first_name"}),
    ],
    ids=["plain", "filter", "loop", "conditional", "filter-block", "set", "whole", "subject"],
)  # fmt: skip
def test_fields_used_other_than_as_plain_output_are_shape_fields(
    templates_copy, edit, body, fields
):
    path = templates_copy / "tracks/warm_up/01-welcome.html"
    edit(path, "<p>Hi {{ lead.first_name }},</p>", f"<p>{body}</p>")
    step = load_tracks(templates_copy)["warm_up"].steps[0]
    assert TemplateRenderer(templates_copy).shape_fields(step) == fields | {"rep.name"}


@pytest.mark.parametrize("value", ["AT&T", '<b>"Bob" O\'Neil</b>', "&amp; already", "plain", ""])
def test_escape_html_writes_what_autoescape_writes(value):
    assert escape_html(value) == str(markupsafe.escape(value))
