"""``leadflow templates lint``: every problem, by file and line, before anything is sent."""

from __future__ import annotations

from flows.email.templates import LintProblem, lint_templates


def lint(templates_dir, sample_context, **options) -> list[str]:
    return [str(problem) for problem in lint_templates(templates_dir, sample_context, **options)]


def test_every_shipped_template_lints_clean(shipped_templates, sample_context):
    assert lint_templates(shipped_templates, sample_context) == []


def test_an_unknown_variable_is_flagged_even_in_a_branch_the_sample_skips(
    templates_copy, edit, sample_context
):
    edit(
        templates_copy / "tracks/warm_up/02-speed-to-lead.html",
        "<p>Hi {{ lead.first_name }},</p>",
        "<p>Hi {{ lead.first_name }},</p>\n{% if not lead.title %}{{ lead.job_title }}{% endif %}",
    )
    assert lint(templates_copy, sample_context) == [
        "tracks/warm_up/02-speed-to-lead.html:12: unknown variable `lead.job_title`: "
        "use only the variables listed in CONTEXT.md"
    ]


def test_an_unknown_top_level_variable_in_the_subject_is_flagged(
    templates_copy, edit, sample_context
):
    edit(
        templates_copy / "tracks/reengage/01-missed-each-other.html",
        "{{ lead.first_name }}, did",
        "{{ name }}, did",
    )
    assert lint(templates_copy, sample_context) == [
        "tracks/reengage/01-missed-each-other.html: in `subject`: unknown variable `name`: "
        "use only the variables listed in CONTEXT.md"
    ]


def test_access_to_internals_is_flagged(templates_copy, edit, sample_context):
    edit(
        templates_copy / "tracks/education/01-cost-of-slow-follow-up.html",
        "<p>Hi {{ lead.first_name }},</p>",
        "<p>Hi {{ ''.__class__ }},</p>",
    )
    problems = lint_templates(templates_copy, sample_context)
    assert problems == [
        LintProblem(
            "tracks/education/01-cost-of-slow-follow-up.html",
            11,
            "`__class__` is not allowed in a template",
        )
    ]


def test_access_to_internals_through_a_subscript_is_caught_when_rendering(
    templates_copy, edit, sample_context
):
    edit(
        templates_copy / "tracks/education/01-cost-of-slow-follow-up.html",
        "<p>Hi {{ lead.first_name }},</p>",
        "<p>Hi {{ lead.first_name['__class__'] }},</p>",
    )
    [problem] = lint(templates_copy, sample_context)
    assert problem.startswith(
        "tracks/education/01-cost-of-slow-follow-up.html:11: not allowed in a template"
    )


def test_an_email_without_the_footer_is_flagged(templates_copy, edit, sample_context):
    edit(
        templates_copy / "tracks/recycle_timing/02-business-case.html",
        '{% include "partials/_footer.html" %}',
        "</td></tr></table></td></tr></table></body></html>",
    )
    problems = lint(templates_copy, sample_context)
    assert len(problems) == 2
    assert problems[0].startswith(
        "tracks/recycle_timing/02-business-case.html: no unsubscribe link"
    )
    assert problems[1].startswith("tracks/recycle_timing/02-business-case.html: no postal address")


def test_an_unsubscribe_link_written_in_the_body_is_enough(templates_copy, edit, sample_context):
    edit(
        templates_copy / "tracks/recycle_timing/02-business-case.html",
        '{% include "partials/_footer.html" %}',
        '<p><a href="{{ unsubscribe_url }}">Stop these</a> {{ sender.address }}</p>',
    )
    assert lint(templates_copy, sample_context) == []


def test_a_long_subject_is_flagged(templates_copy, edit, sample_context):
    edit(
        templates_copy / "tracks/warm_up/03-customer-story.html",
        "subject: How one team stopped losing leads between marketing and sales",
        "subject: How a team much like {{ lead.company }} stopped losing its inbound leads to delay",
    )
    rendered = "How a team much like Northwind Logistics stopped losing its inbound leads to delay"
    [problem] = lint(templates_copy, sample_context)
    assert problem.startswith(
        f"tracks/warm_up/03-customer-story.html: the subject is {len(rendered)} characters "
        f"with the sample context ({rendered!r})"
    )
    assert "shorten it to 78 or fewer" in problem


def test_a_missing_partial_is_flagged(templates_copy, sample_context):
    (templates_copy / "partials/_footer.html").unlink()
    problems = lint(templates_copy, sample_context)
    assert problems[0] == (
        "partials/_footer.html: missing: every email includes it "
        "(see README.md for what it must hold)"
    )
    # And every email that includes it says so, with the line of the include.
    assert (
        "tracks/warm_up/01-welcome.html:31: `partials/_footer.html` does not exist: "
        "check the file name (paths start at templates/)"
    ) in problems
    assert len(problems) == 1 + 15


def test_a_jinja_syntax_error_is_flagged_with_its_line(templates_copy, edit, sample_context):
    edit(
        templates_copy / "tracks/reengage/02-answers-without-a-call.html",
        "{{ lead.company }}, reply",
        "{{ lead.company }, reply",
    )
    [problem] = lint(templates_copy, sample_context)
    assert problem.startswith("tracks/reengage/02-answers-without-a-call.html:24: Jinja syntax")


def test_front_matter_problems_are_listed_and_the_other_emails_still_checked(
    templates_copy, edit, sample_context
):
    (templates_copy / "tracks/competitor_winback/02-why-teams-switch.html").unlink()
    edit(templates_copy / "tracks/warm_up/01-welcome.html", "preheader:", "pre_header:")
    edit(
        templates_copy / "tracks/warm_up/02-speed-to-lead.html",
        "<p>Hi {{ lead.first_name }},</p>",
        "<p>Hi {{ lead.name }},</p>",
    )
    problems = lint(templates_copy, sample_context)
    assert problems == [
        "tracks/competitor_winback: steps are 1, 3: number them 1 to 2 with no gaps or repeats "
        "(file names and `step:` both)",
        "tracks/warm_up/01-welcome.html: missing key `preheader`: add `preheader: Three minutes "
        "to read` (the preview text shown after the subject)",
        "tracks/warm_up/01-welcome.html:5: unknown key `pre_header`: did you mean `preheader`?",
        "tracks/warm_up/02-speed-to-lead.html:11: unknown variable `lead.name`: use only the "
        "variables listed in CONTEXT.md",
    ]


def test_one_unknown_variable_does_not_hide_the_other_problems_of_its_email(
    templates_copy, edit, sample_context
):
    path = templates_copy / "tracks/education/02-one-definition.html"
    edit(path, "<p>Hi {{ lead.first_name }},</p>", "<p>Hi {{ lead.nickname }},</p>")
    edit(path, '{% include "partials/_footer.html" %}', "")
    problems = lint(templates_copy, sample_context)
    file = "tracks/education/02-one-definition.html"
    assert [problem.split(": ")[1] for problem in problems] == [
        "no unsubscribe link",
        "no postal address (the law requires one in marketing email)",
        "unknown variable `lead.nickname`",
    ]
    assert all(problem.startswith(file) for problem in problems)


def test_errors_in_several_emails_are_all_reported(templates_copy, edit, sample_context):
    edit(
        templates_copy / "tracks/warm_up/01-welcome.html",
        "{{ sender.name }}",
        "{{ sender.name | nosuchfilter }}",
    )
    edit(templates_copy / "tracks/reengage/03-close-the-file.html", "{{ lead.company }}", "{{ x }}")
    files = {problem.file for problem in lint_templates(templates_copy, sample_context)}
    assert files == {"tracks/warm_up/01-welcome.html", "tracks/reengage/03-close-the-file.html"}


def test_links_must_be_web_or_email_addresses(templates_copy, edit, sample_context):
    edit(
        templates_copy / "tracks/warm_up/02-speed-to-lead.html",
        "https://leadflow.example/guides/speed-to-lead",
        "/guides/speed-to-lead",
    )
    edit(
        templates_copy / "tracks/warm_up/02-speed-to-lead.html",
        "<p>Hi {{ lead.first_name }},</p>",
        '<p>Hi {{ lead.first_name }},</p><img src="javascript:x" alt="logo">'
        '<a href="mailto:{{ rep.email }}">mail me</a><a href="https://x.example/a">ok</a>',
    )
    assert lint(templates_copy, sample_context) == [
        'tracks/warm_up/02-speed-to-lead.html: <img src="javascript:x"> is not a web or email '
        "address: write a full https://... address (or mailto:...); mail programs cannot open "
        "relative or other links",
        'tracks/warm_up/02-speed-to-lead.html: <a href="/guides/speed-to-lead"> is not a web or '
        "email address: write a full https://... address (or mailto:...); mail programs cannot "
        "open relative or other links",
    ]


def test_an_email_without_text_is_flagged(templates_copy, sample_context):
    (templates_copy / "tracks/warm_up/03-customer-story.html").write_text(
        "---\nstep: 3\ndelay_days: 7\nsubject: Hi\npreheader: Hello\n"
        "follow_up: {title: Follow up, due_in_days: 2}\n---\n"
        '<img src="https://x.example/all-in-a-picture.png">\n'
    )
    problems = lint(templates_copy, sample_context)
    assert any("the plain-text part is empty" in problem for problem in problems)


def test_tracks_need_an_unsubscribe_group_only_with_sendgrid(templates_copy, sample_context):
    assert lint_templates(templates_copy, sample_context) == []
    for track in ("competitor_winback", "education", "recycle_timing", "reengage"):
        path = templates_copy / "tracks" / track / "track.yml"
        path.write_text(path.read_text() + "unsubscribe_group: 4242\n")
    assert lint(templates_copy, sample_context, requires_unsubscribe_groups=True) == [
        "tracks/warm_up/track.yml: no `unsubscribe_group`: with SendGrid (SENDGRID_API_KEY is "
        "set) every track needs one, so an unsubscribe leaves this track's emails only; add "
        "`unsubscribe_group: <id>` (SendGrid > Suppressions > Unsubscribe Groups)"
    ]


def test_lint_names_the_templates_whose_output_varies_beyond_substitution(tmp_path):
    import shutil

    from flows.email.templates import templates_rendered_per_shape
    from flows.settings import PROJECT_ROOT

    templates = tmp_path / "templates"
    shutil.copytree(PROJECT_ROOT / "templates", templates)
    shipped = templates_rendered_per_shape(templates)
    # The shipped signature compares the rep's name with the sender's: every step varies by it.
    assert set(shipped.values()) == {frozenset({"rep.name"})}
    welcome = templates / "tracks/warm_up/01-welcome.html"
    welcome.write_text(
        welcome.read_text().replace(
            "<p>Hi {{ lead.first_name }},</p>",
            "<p>Hi {{ lead.first_name }},</p>{% if lead.title %}<p>As {{ lead.title }}</p>{% endif %}",
        )
    )
    varying = templates_rendered_per_shape(templates)
    assert varying["tracks/warm_up/01-welcome.html"] == frozenset({"rep.name", "lead.title"})
