"""Render nurture emails in a sandbox.

Templates are written by marketers and rendered with lead-supplied text, so: Jinja's immutable
sandbox (no access to Python internals, no mutating the context), autoescaping for ``.html``
bodies (a ``<script>`` in a first name arrives as text), and StrictUndefined (a misspelt
variable is an error, never a blank). Subject, preheader and follow-up title are Jinja strings
too; they are plain text, so they are not HTML-escaped but are forced onto one line, which
keeps lead-supplied CR/LF out of the email headers.

Sending renders a step once per *shape*, not once per lead. A SendGrid request carries one
content for up to 1,000 recipients, each with its own substitutions, so the step is rendered
with tag markers (``-lf_lead_first_name-`` in the HTML, ``-lf_text_lead_first_name-`` in the
text part) where a lead's values are output, and each lead's values replace the tags (escaped
for HTML in the HTML part, as autoescape would have). A value a template does more with than
output (an ``{% if %}`` test, a comparison, a filter, a loop) is a *shape field*: it is
rendered for real, and leads are grouped by the values of their shape fields. The result is
byte for byte what rendering each lead on its own gives (a test holds every shipped template
to that), at the cost of one render per group instead of one per lead.
"""

from __future__ import annotations

import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError
from markupsafe import Markup

from flows.email.context import PERSONAL_FIELDS, clean_text, nest
from flows.email.plaintext import html_to_text
from flows.email.tracks import (
    FRONT_MATTER_FENCE,
    LintProblem,
    NurtureStep,
    TemplateError,
    split_front_matter,
)

CONTEXT_DOC = "CONTEXT.md"
# Rendered from the lines per lead, and usable in the body (``<title>{{ email.subject }}``).
LINE_FIELDS = {"email.subject": "subject", "email.preheader": "preheader"}
TAGGED_FIELDS = (*PERSONAL_FIELDS, *LINE_FIELDS)
# A lead value holding this could pose as a tag; such a lead is rendered on its own.
TAG_PREFIX = "-lf_"
# Objects whose fields are personal: using one whole (``{{ lead }}``) makes all of them shape.
_PERSONAL_OBJECTS = {field.partition(".")[0] for field in TAGGED_FIELDS if "." in field}


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    preheader: str
    html: str
    text: str  # the plain-text alternative, derived from the HTML
    follow_up_title: str


@cache
def html_tag(field: str) -> str:
    return f"{TAG_PREFIX}{field.replace('.', '_')}-"


@cache
def text_tag(field: str) -> str:
    return f"{TAG_PREFIX}text_{field.replace('.', '_')}-"


@dataclass(frozen=True)
class PersonalEmail:
    """One lead's part of a rendered shape: what goes into its personalization."""

    subject: str
    follow_up_title: str
    substitutions: dict[str, str]


@dataclass(frozen=True)
class RenderedShape:
    """A step rendered once for every lead with the same shape values, with tags for the rest."""

    html: str  # with html_tag()s
    text: str  # with text_tag()s
    subject: str  # the lines with text_tag()s, not yet forced onto one line
    preheader: str
    follow_up_title: str
    line_fields: tuple[str, ...]  # the personal fields the lines have tags for
    html_fields: tuple[str, ...]  # the fields whose tags occur in the html
    text_fields: tuple[str, ...]  # ... and in the text

    def personalize(self, values: Mapping[str, str]) -> PersonalEmail:
        """One lead's subject, follow-up title and substitutions, from its ``personal_values``."""
        subject = self._line(self.subject, values)
        lines = {"email.subject": subject}
        if "email.preheader" in self.html_fields or "email.preheader" in self.text_fields:
            lines["email.preheader"] = self._line(self.preheader, values)
        substitutions = {
            html_tag(f): escape_html(values[f] if f in values else lines[f])
            for f in self.html_fields
        }
        for f in self.text_fields:
            substitutions[text_tag(f)] = values[f] if f in values else lines[f]
        return PersonalEmail(subject, self._line(self.follow_up_title, values), substitutions)

    def _line(self, line: str, values: Mapping[str, str]) -> str:
        """A line with this lead's values, on one line (as ``_render_line`` gives it)."""
        if TAG_PREFIX in line:
            for field in self.line_fields:
                line = line.replace(text_tag(field), values[field])
        return clean_text(line)


def escape_html(value: str) -> str:
    """``str(markupsafe.escape(value))``, what autoescape writes, without building a Markup."""
    return (
        value.replace("&", "&amp;")
        .replace(">", "&gt;")
        .replace("<", "&lt;")
        .replace("'", "&#39;")
        .replace('"', "&#34;")
    )


def shape_values(fields: frozenset[str], values: Mapping[str, str]) -> dict[str, str]:
    """What a lead's email is rendered with for real: its key among the step's shapes.

    The shape fields, and every empty value (an empty tag can leave a blank paragraph in the
    text part that a real render would have dropped); all values for a lead with one that
    could pose as a tag.
    """
    if TAG_PREFIX in "\0".join(values.values()):  # no value holds a NUL (clean_text)
        return dict(values)
    return {field: value for field, value in values.items() if field in fields or not value}


class _BodyLoader(jinja2.FileSystemLoader):
    """Loads step bodies without their front matter (kept as blank lines, so line numbers hold)."""

    def get_source(self, environment: jinja2.Environment, template: str) -> tuple[str, str, Any]:
        source, filename, uptodate = super().get_source(environment, template)
        if source.startswith(FRONT_MATTER_FENCE):
            _, source = split_front_matter(source, template)
        return source, filename, uptodate


def make_environment(templates_dir: Path) -> ImmutableSandboxedEnvironment:
    return ImmutableSandboxedEnvironment(
        loader=_BodyLoader(templates_dir, encoding="utf-8-sig"),
        autoescape=jinja2.select_autoescape(("html",), default_for_string=False, default=False),
        undefined=jinja2.StrictUndefined,
        # A renderer lives for one run: re-checking every file's mtime per email is wasted work.
        auto_reload=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def explain(error: Exception) -> str:
    """What went wrong in a template, in words that point at the fix."""
    if isinstance(error, SecurityError):
        return (
            f"not allowed in a template ({error.message}); "
            f"use only the variables listed in {CONTEXT_DOC}"
        )
    if isinstance(error, jinja2.UndefinedError):
        return (
            f"unknown variable ({error.message}); "
            f"use only the variables listed in {CONTEXT_DOC}, spelt as there"
        )
    if isinstance(error, jinja2.TemplateNotFound):
        return f"`{error.name}` does not exist: check the file name (paths start at templates/)"
    if isinstance(error, jinja2.TemplateSyntaxError):
        return f"Jinja syntax error: {error.message}"
    return f"{type(error).__name__}: {error}"


class TemplateRenderer:
    def __init__(self, templates_dir: Path) -> None:
        self.templates_dir = templates_dir
        self.environment = make_environment(templates_dir)
        self._compiled_lines: dict[str, jinja2.Template] = {}
        self._shape_fields: dict[NurtureStep, frozenset[str]] = {}

    def render(self, step: NurtureStep, context: Mapping[str, Any]) -> RenderedEmail:
        subject = self._render_line(step, "subject", step.subject, context)
        preheader = self._render_line(step, "preheader", step.preheader, context)
        follow_up_title = self._render_line(step, "follow_up.title", step.follow_up_title, context)
        body_context = {**context, "email": {"subject": subject, "preheader": preheader}}
        with self._template_errors(step.template, part=None):
            # The blank lines standing in for the front matter are not part of the email.
            html = self.environment.get_template(step.template).render(body_context).lstrip()
        return RenderedEmail(subject, preheader, html, html_to_text(html), follow_up_title)

    def shape_fields(self, step: NurtureStep) -> frozenset[str]:
        """The lead fields (``lead.title``, ``rep.name``) the step does more with than output.

        A step whose shape fields are empty renders once for all its leads; otherwise once per
        combination of their values; lint can name the templates that do this.
        """
        found = self._shape_fields.get(step)
        if found is None:
            with self._template_errors(step.template, part=None):
                _, shape = self._uses_in_file(step.template, set())
            lines = {}
            for field, key in LINE_FIELDS.items():
                with self._template_errors(step.template, part=key):
                    lines[field] = _field_uses(self.environment.parse(getattr(step, key)))
            with self._template_errors(step.template, part="follow_up.title"):
                shape |= _field_uses(self.environment.parse(step.follow_up_title))[1]
            for field, (used, line_shape) in lines.items():
                shape |= line_shape
                # A test on the subject is a test on every field the subject shows.
                if field in shape:
                    shape |= used
            found = self._shape_fields[step] = frozenset(shape - set(LINE_FIELDS))
        return found

    def _uses_in_file(self, name: str, seen: set[str]) -> tuple[set[str], set[str]]:
        """Fields used, and shape fields, in a template file and the files it includes."""
        seen.add(name)
        assert self.environment.loader is not None
        source, _, _ = self.environment.loader.get_source(self.environment, name)
        tree = self.environment.parse(source, name)
        used, shape = _field_uses(tree)
        loading = (nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)
        for node in tree.find_all(loading):
            assert isinstance(node, loading)
            target = node.template
            if not (isinstance(target, nodes.Const) and isinstance(target.value, str)):
                return set(TAGGED_FIELDS), set(TAGGED_FIELDS)  # which file is unknown here
            if target.value not in seen:
                more_used, more_shape = self._uses_in_file(target.value, seen)
                used |= more_used
                shape |= more_shape
        return used, shape

    def render_shape(
        self, step: NurtureStep, shared: Mapping[str, Any], shape_values: Mapping[str, str]
    ) -> RenderedShape:
        """Render ``step`` once, with ``shape_values`` for real and tags for the other fields.

        ``shared`` is the context every lead of the step has (``shared_context``);
        ``shape_values`` holds at least the ``shape_fields`` of the step.
        """
        tagged = [field for field in PERSONAL_FIELDS if field not in shape_values]
        line_fields = tuple(tagged)
        line_context = {
            **shared,
            **nest({**{f: text_tag(f) for f in tagged}, **shape_values}),
        }
        subject = self._render_line(step, "subject", step.subject, line_context, clean=False)
        preheader = self._render_line(step, "preheader", step.preheader, line_context, clean=False)
        follow_up_title = self._render_line(
            step, "follow_up.title", step.follow_up_title, line_context, clean=False
        )
        email: dict[str, str] = {}
        for field, line in (("email.subject", subject), ("email.preheader", preheader)):
            if any(text_tag(f) in line for f in tagged):
                email[LINE_FIELDS[field]] = Markup(html_tag(field))
                tagged.append(field)
            else:
                email[LINE_FIELDS[field]] = clean_text(line)
        body_values: dict[str, str] = {
            **{f: Markup(html_tag(f)) for f in tagged if f not in LINE_FIELDS},
            **shape_values,
        }
        context = {**shared, **nest(body_values), "email": email}
        with self._template_errors(step.template, part=None):
            html = self.environment.get_template(step.template).render(context).lstrip()
        text = html_to_text(html)
        for field in tagged:
            text = text.replace(html_tag(field), text_tag(field))
        return RenderedShape(
            html=html,
            text=text,
            subject=subject,
            preheader=preheader,
            follow_up_title=follow_up_title,
            line_fields=line_fields,
            html_fields=tuple(f for f in tagged if html_tag(f) in html),
            text_fields=tuple(f for f in tagged if text_tag(f) in text),
        )

    def _render_line(
        self,
        step: NurtureStep,
        key: str,
        source: str,
        context: Mapping[str, Any],
        *,
        clean: bool = True,
    ) -> str:
        with self._template_errors(step.template, part=key):
            template = self._compiled_lines.get(source)
            if template is None:
                template = self._compiled_lines[source] = self.environment.from_string(source)
            rendered = template.render(context)
        return clean_text(rendered) if clean else rendered

    @contextmanager
    def _template_errors(self, file: str, *, part: str | None) -> Iterator[None]:
        """Turn any error raised by template code into a TemplateError naming file and line."""
        try:
            yield
        except TemplateError:
            raise
        except Exception as error:
            where, line = self._locate(error) if part is None else (file, None)
            prefix = f"in `{part}`: " if part else ""
            problem = LintProblem(where or file, line, prefix + explain(error))
            if isinstance(error, jinja2.TemplateError):
                raise TemplateError.from_problems(problem) from None
            raise TemplateError.from_problems(problem) from error

    def _locate(self, error: Exception) -> tuple[str | None, int | None]:
        """The template file and line an error came from (a partial's, if it was there)."""
        if isinstance(error, jinja2.TemplateSyntaxError):
            return self._relative(error.filename), error.lineno
        for frame in reversed(traceback.extract_tb(error.__traceback__)):
            relative = self._relative(frame.filename)
            if relative is not None:
                return relative, frame.lineno
        return None, None

    def _relative(self, filename: str | None) -> str | None:
        if not filename or filename.startswith("<"):
            return None
        root = self.templates_dir.resolve()
        path = Path(filename).resolve()
        return path.relative_to(root).as_posix() if path.is_relative_to(root) else None


# Where output is transformed as a whole, a field shown in it is not plain output.
_TRANSFORMING = (
    nodes.FilterBlock,
    nodes.Macro,
    nodes.CallBlock,
    nodes.AssignBlock,
    nodes.EvalContextModifier,
)


def _field_of(node: nodes.Node) -> str | None:
    """The context field a node reads (``lead.first_name``, ``unsubscribe_url``), if any."""
    if isinstance(node, nodes.Name):
        return node.name if node.ctx == "load" and node.name in TAGGED_FIELDS else None
    if isinstance(node, nodes.Getattr):
        attribute: object = node.attr
    elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
        attribute = node.arg.value
    else:
        return None
    if isinstance(node.node, nodes.Name) and node.node.ctx == "load":
        path = f"{node.node.name}.{attribute}"
        return path if path in TAGGED_FIELDS else None
    return None


def _field_uses(tree: nodes.Node) -> tuple[set[str], set[str]]:
    """The fields a template reads, and those among them it reads other than as plain output."""
    used: set[str] = set()
    shape: set[str] = set()

    def visit(node: nodes.Node, plain: set[int], in_plain_scope: bool) -> None:
        field = _field_of(node)
        if field is not None:
            used.add(field)
            if id(node) not in plain:
                shape.add(field)
            return
        if isinstance(node, nodes.Name) and node.ctx == "load" and node.name in _PERSONAL_OBJECTS:
            whole = {f for f in TAGGED_FIELDS if f.startswith(f"{node.name}.")}
            used.update(whole)
            shape.update(whole)
            return
        in_plain_scope = in_plain_scope and not isinstance(node, _TRANSFORMING)
        if isinstance(node, nodes.Output) and in_plain_scope:
            plain = plain | {id(child) for child in node.nodes}
        for child in node.iter_child_nodes():
            visit(child, plain, in_plain_scope)

    visit(tree, set(), True)
    return used, shape
