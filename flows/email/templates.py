"""The ``templates/`` folder as marketing and the flows use it: load, publish, lint, preview.

Reading the tracks lives in ``tracks.py``, the context in ``context.py`` and rendering in
``render.py``; this module is the one the CLI and the flows import.

Lint makes two passes and reports every problem of both. A static pass reads every
template's Jinja and flags variables the context does not have (also inside ``{% if %}``
branches the sample never takes) and access to internals. A render pass renders every step with
the sample context, as a lead would get it, and checks what only the result shows: the
unsubscribe link, the postal address, the subject, the plain-text part, every link. A step that
fails to render strictly is rendered again with unknown variables left blank, so one mistake
does not hide the others in the same email.

The gallery of every step (``preview --all``) is ``gallery.py``; a test send is ``proof.py``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jinja2
from jinja2 import meta, nodes

from flows.email.context import build_context, load_context_file, load_sample_context
from flows.email.plaintext import link_targets
from flows.email.render import CONTEXT_DOC, RenderedEmail, TemplateRenderer, explain
from flows.email.tracks import (
    TRACKS_FOLDER,
    LintProblem,
    NurtureStep,
    TemplateError,
    Track,
    load_tracks,
    publish_tracks,
    read_step_file,
    read_tracks,
)

__all__ = [
    "LintProblem",
    "NurtureStep",
    "RenderedEmail",
    "TemplateError",
    "TemplateRenderer",
    "Track",
    "build_context",
    "lint_templates",
    "load_context_file",
    "load_sample_context",
    "load_tracks",
    "preview",
    "publish_tracks",
]

PARTIALS_FOLDER = "partials"
REQUIRED_PARTIALS = ("_header.html", "_footer.html")
# Inboxes cut longer subjects; 78 is also the line length email headers are meant to fit in.
MAX_SUBJECT_LENGTH = 78
# Provided by the renderer itself rather than built from the queue row.
RENDERER_VARIABLES: dict[str, Any] = {"email": {"subject": "", "preheader": ""}}
# What a link in an email may point at: recipients' mail programs open nothing else.
LINK_SCHEMES = ("http", "https", "mailto")


def _unknown_variables(
    environment: jinja2.Environment,
    source: str,
    file: str,
    context: Mapping[str, Any],
    *,
    part: str | None = None,
) -> list[LintProblem]:
    prefix = f"in `{part}`: " if part else ""
    try:
        tree = environment.parse(source)
    except jinja2.TemplateSyntaxError as error:
        return [LintProblem(file, None if part else error.lineno, prefix + explain(error))]
    try:
        undeclared = meta.find_undeclared_variables(tree)
    except jinja2.TemplateSyntaxError as error:  # compiling it found e.g. an unknown filter
        return [LintProblem(file, None if part else error.lineno, prefix + explain(error))]
    problems = []
    known = set(context) | set(environment.globals)
    for name in sorted(undeclared - known):
        line = next(node.lineno for node in tree.find_all(nodes.Name) if node.name == name)
        problems.append(
            LintProblem(
                file,
                None if part else line,
                f"{prefix}unknown variable `{name}`: use only the variables listed in "
                f"{CONTEXT_DOC}",
            )
        )
    for node in tree.find_all(nodes.Getattr):
        if node.attr.startswith("_"):
            message = f"`{node.attr}` is not allowed in a template"
        elif (
            isinstance(node.node, nodes.Name)
            and isinstance(context.get(node.node.name), Mapping)
            and node.attr not in context[node.node.name]
        ):
            message = (
                f"unknown variable `{node.node.name}.{node.attr}`: "
                f"use only the variables listed in {CONTEXT_DOC}"
            )
        else:
            continue
        problems.append(LintProblem(file, None if part else node.lineno, prefix + message))
    return problems


def _static_problems(
    renderer: TemplateRenderer, steps: Iterable[NurtureStep], context: Mapping[str, Any]
) -> list[LintProblem]:
    environment = renderer.environment
    assert environment.loader is not None
    problems = []
    partials = sorted((renderer.templates_dir / PARTIALS_FOLDER).glob("*.html"))
    bodies = [path.relative_to(renderer.templates_dir).as_posix() for path in partials]
    for step in steps:
        bodies.append(step.template)
        lines = {
            "subject": step.subject,
            "preheader": step.preheader,
            "follow_up.title": step.follow_up_title,
        }
        for part, source in lines.items():
            problems += _unknown_variables(environment, source, step.template, context, part=part)
    for body in bodies:
        source, _, _ = environment.loader.get_source(environment, body)
        problems += _unknown_variables(environment, source, body, context)
    return problems


def _result_problems(
    step: NurtureStep, email: RenderedEmail, sample_context: Mapping[str, Any]
) -> list[LintProblem]:
    problems = []
    if len(email.subject) > MAX_SUBJECT_LENGTH:
        problems.append(
            LintProblem(
                step.template,
                None,
                f"the subject is {len(email.subject)} characters with the sample context "
                f"({email.subject!r}): shorten it to {MAX_SUBJECT_LENGTH} or fewer so inboxes "
                "show it whole",
            )
        )
    unsubscribe_url = sample_context.get("unsubscribe_url")
    if not unsubscribe_url or unsubscribe_url not in link_targets(email.html):
        problems.append(
            LintProblem(
                step.template,
                None,
                "no unsubscribe link: include partials/_footer.html "
                '(or link to `<a href="{{ unsubscribe_url }}">`)',
            )
        )
    sender = sample_context.get("sender")
    address = sender.get("address") if isinstance(sender, Mapping) else None
    if address and address not in email.text:
        problems.append(
            LintProblem(
                step.template,
                None,
                "no postal address (the law requires one in marketing email): "
                "include partials/_footer.html, which shows `{{ sender.address }}`",
            )
        )
    if not email.text.strip():
        problems.append(
            LintProblem(
                step.template,
                None,
                "the plain-text part is empty (text-only mail programs would show a blank "
                "email): write the message as text in <p> paragraphs, not only images",
            )
        )
    return problems + _link_problems(step, email.html, unsubscribe_url)


class _LinkCollector(HTMLParser):
    """Every ``href`` and ``src`` value of an HTML document, with its tag."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("href", "src") and value is not None:
                self.links.append((tag, name, value.strip()))


def _is_openable(link: str) -> bool:
    parts = urlsplit(link)
    if parts.scheme == "mailto":
        return bool(parts.path)
    return parts.scheme in LINK_SCHEMES and bool(parts.netloc)


def _link_problems(step: NurtureStep, html: str, unsubscribe_url: Any) -> list[LintProblem]:
    collector = _LinkCollector()
    collector.feed(html)
    collector.close()
    problems = []
    seen = set()
    for tag, attribute, link in collector.links:
        if link == unsubscribe_url or link in seen or _is_openable(link):
            continue
        seen.add(link)
        problems.append(
            LintProblem(
                step.template,
                None,
                f'<{tag} {attribute}="{link}"> is not a web or email address: write a full '
                "https://... address (or mailto:...); mail programs cannot open relative or "
                "other links",
            )
        )
    return problems


def _unsubscribe_group_problems(tracks: Iterable[Track]) -> list[LintProblem]:
    return [
        LintProblem(
            f"{TRACKS_FOLDER}/{track.name}/track.yml",
            None,
            "no `unsubscribe_group`: with SendGrid (SENDGRID_API_KEY is set) every track needs "
            "one, so an unsubscribe leaves this track's emails only; add "
            "`unsubscribe_group: <id>` (SendGrid > Suppressions > Unsubscribe Groups)",
        )
        for track in tracks
        if track.unsubscribe_group is None
    ]


def _lenient_renderer(templates_dir: Path) -> TemplateRenderer:
    """A renderer that leaves unknown variables blank, to check the rest of a broken email."""
    renderer = TemplateRenderer(templates_dir)
    renderer.environment = renderer.environment.overlay(undefined=jinja2.ChainableUndefined)
    return renderer


def lint_templates(
    templates_dir: Path,
    sample_context: Mapping[str, Any],
    *,
    requires_unsubscribe_groups: bool = False,
) -> list[LintProblem]:
    """Every problem in the templates, by file and line; an empty list means ready to send.

    ``requires_unsubscribe_groups``: the provider is SendGrid, where each track needs an
    unsubscribe group.
    """
    reading = read_tracks(templates_dir)
    problems = list(reading.problems)
    if requires_unsubscribe_groups:
        problems += _unsubscribe_group_problems(reading.tracks.values())
    for partial in REQUIRED_PARTIALS:
        if not (templates_dir / PARTIALS_FOLDER / partial).is_file():
            problems.append(
                LintProblem(
                    f"{PARTIALS_FOLDER}/{partial}",
                    None,
                    "missing: every email includes it (see README.md for what it must hold)",
                )
            )
    renderer = TemplateRenderer(templates_dir)
    static_problems = _static_problems(
        renderer, reading.steps, {**sample_context, **RENDERER_VARIABLES}
    )
    problems += static_problems
    # A render failure in a file the static pass already flagged is the same mistake again.
    flagged_files = {problem.file for problem in static_problems}
    lenient_renderer = _lenient_renderer(templates_dir)
    for step in reading.steps:
        context = context_for_step(sample_context, step)
        try:
            email = renderer.render(step, context)
        except TemplateError as error:
            problems += [problem for problem in error.problems if problem.file not in flagged_files]
            try:
                email = lenient_renderer.render(step, context)
            except TemplateError:
                continue  # e.g. a syntax error or a missing include: reported above
        problems += _result_problems(step, email, sample_context)
    return sorted(problems, key=lambda problem: (problem.file, problem.line or 0))


def context_for_step(context: Mapping[str, Any], step: NurtureStep) -> dict[str, Any]:
    """A context whose ``track`` is the step being rendered (for preview and lint)."""
    return {**context, "track": {"name": step.track, "step": step.step}}


def find_step_file(templates_dir: Path, template_path: str | Path) -> Path:
    """A step file given relative to ``templates/`` or to the working directory."""
    root = templates_dir.resolve()
    for candidate in (Path(template_path), root / template_path):
        path = candidate.resolve()
        if path.is_file() and path.parent.parent == root / TRACKS_FOLDER:
            return path
    raise TemplateError.from_problems(
        LintProblem(
            str(template_path),
            None,
            f"no such email under {root / TRACKS_FOLDER}: give a path like "
            "tracks/warm_up/01-welcome.html",
        )
    )


def preview(
    templates_dir: Path, template_path: str | Path, context: Mapping[str, Any]
) -> RenderedEmail:
    """Render one step file as its lead would receive it, for ``leadflow templates preview``."""
    root = templates_dir.resolve()
    step, problems = read_step_file(root, find_step_file(root, template_path))
    if step is None:
        raise TemplateError.from_problems(*problems)
    return TemplateRenderer(root).render(step, context_for_step(context, step))


def templates_rendered_per_shape(templates_dir: Path) -> dict[str, frozenset[str]]:
    """Templates whose output varies beyond substitutable values, with the fields that make
    it vary (tested, compared or filtered rather than shown): such a step is rendered once per
    combination of those fields' values instead of once for all its leads (templates/README.md).
    """
    renderer = TemplateRenderer(templates_dir)
    varying: dict[str, frozenset[str]] = {}
    for track in load_tracks(templates_dir).values():
        for step in track.steps:
            fields = renderer.shape_fields(step)
            if fields:
                varying[step.template] = fields
    return varying
