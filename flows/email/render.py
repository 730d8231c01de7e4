"""Render nurture emails in a sandbox.

Templates are written by marketers and rendered with lead-supplied text, so: Jinja's immutable
sandbox (no access to Python internals, no mutating the context), autoescaping for ``.html``
bodies (a ``<script>`` in a first name arrives as text), and StrictUndefined (a misspelt
variable is an error, never a blank). Subject, preheader and follow-up title are Jinja strings
too; they are plain text, so they are not HTML-escaped but are forced onto one line, which
keeps lead-supplied CR/LF out of the email headers.
"""

from __future__ import annotations

import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from flows.email.context import clean_text
from flows.email.plaintext import html_to_text
from flows.email.tracks import (
    FRONT_MATTER_FENCE,
    LintProblem,
    NurtureStep,
    TemplateError,
    split_front_matter,
)

CONTEXT_DOC = "CONTEXT.md"


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    preheader: str
    html: str
    text: str  # the plain-text alternative, derived from the HTML
    follow_up_title: str


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

    def render(self, step: NurtureStep, context: Mapping[str, Any]) -> RenderedEmail:
        subject = self._render_line(step, "subject", step.subject, context)
        preheader = self._render_line(step, "preheader", step.preheader, context)
        follow_up_title = self._render_line(step, "follow_up.title", step.follow_up_title, context)
        body_context = {**context, "email": {"subject": subject, "preheader": preheader}}
        with self._template_errors(step.template, part=None):
            # The blank lines standing in for the front matter are not part of the email.
            html = self.environment.get_template(step.template).render(body_context).lstrip()
        return RenderedEmail(subject, preheader, html, html_to_text(html), follow_up_title)

    def _render_line(
        self, step: NurtureStep, key: str, source: str, context: Mapping[str, Any]
    ) -> str:
        with self._template_errors(step.template, part=key):
            template = self._compiled_lines.get(source)
            if template is None:
                template = self._compiled_lines[source] = self.environment.from_string(source)
            rendered = template.render(context)
        return clean_text(rendered)

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
