"""``leadflow templates preview --all``: every step for every sample lead, with an index."""

from __future__ import annotations

import html
import re

import pytest

from flows.email.gallery import load_sample_leads, render_gallery
from flows.email.tracks import TemplateError


def test_every_step_is_rendered_for_every_sample_lead(shipped_templates, tmp_path):
    gallery = render_gallery(shipped_templates, tmp_path / "gallery")
    leads = load_sample_leads(shipped_templates)
    assert [lead.id for lead in leads] == [
        "full-profile",
        "no-first-name",
        "long-company-name",
        "markup-in-name",
    ]
    assert len(gallery.entries) == 4 * 15
    assert gallery.failures == []
    index = gallery.index.read_text()
    linked = set(re.findall(r'href="([^"]+)"', index))
    assert linked == {entry.page for entry in gallery.entries}
    assert all((gallery.index.parent / page).is_file() for page in linked)
    # Self-contained: nothing is fetched from elsewhere.
    assert "<script" not in index and "<link" not in index


def test_a_page_shows_subject_preheader_follow_up_and_the_fallbacks(shipped_templates, tmp_path):
    render_gallery(shipped_templates, tmp_path)
    page = (tmp_path / "no-first-name/warm_up-01.html").read_text()
    assert "<th>subject</th><td>Welcome, there: what to expect from us</td>" in page
    assert "<th>preheader</th><td>One useful idea per email" in page
    assert "Research Brightpath Analytics: is there a fit for us?" in page
    # warm_up/track.yml: a task only for a click on the welcome email.
    assert "made when the lead clicks a link in the email, due 3\ndays after that" in page
    assert "<iframe" in page and "srcdoc=" in page


def test_markup_in_a_name_arrives_as_text(shipped_templates, tmp_path):
    render_gallery(shipped_templates, tmp_path)
    page = (tmp_path / "markup-in-name/warm_up-01.html").read_text()
    assert "<th>subject</th><td>Welcome, &lt;b&gt;Bob&lt;/b&gt;: what to expect" in page
    email = html.unescape(re.search(r'srcdoc="([^"]*)"', page)[1])
    assert "<b>Bob</b>" not in email
    assert "Hi &lt;b&gt;Bob&lt;/b&gt;," in email
    assert "<script>" not in email


def test_an_email_that_does_not_render_gets_a_page_saying_why(templates_copy, edit, tmp_path):
    edit(templates_copy / "tracks/education/03-scoring-checklist.html", "<p>Hi", "<p>{{ x }} Hi")
    gallery = render_gallery(templates_copy, tmp_path / "gallery")
    assert {entry.page for entry in gallery.failures} == {
        f"{lead}/education-03.html"
        for lead in ("full-profile", "no-first-name", "long-company-name", "markup-in-name")
    }
    page = (tmp_path / "gallery/full-profile/education-03.html").read_text()
    assert "unknown variable" in page
    assert "does not render" in gallery.index.read_text()


def test_a_malformed_sample_leads_file_lists_every_problem(templates_copy):
    (templates_copy / "sample_leads.yml").write_text(
        "- {id: Bad Id, email: a@b.example}\n"
        "- {id: ok, first: Ann}\n"
        "- {id: ok, email: c@d.example}\n"
    )
    with pytest.raises(TemplateError) as raised:
        load_sample_leads(templates_copy)
    assert [problem.message for problem in raised.value.problems] == [
        "entry 1: `id` is 'Bad Id'; give lower-case letters, digits, - or _ (it names the "
        "gallery folder), e.g. `id: no-company`",
        "entry 2 (ok): unknown key(s) first; allowed: id, description, email, first_name, "
        "last_name, company, title, owner_name, owner_email",
        "entry 2 (ok): add `email:` (the lead's address)",
        "entry 3: `id: ok` is used twice; give each lead its own",
    ]
    assert str(raised.value).startswith("sample_leads.yml: entry 1")
