"""The plain-text alternative of an HTML email, derived from the HTML.

Mail clients that show text only, spam filters and screen readers all read this part, so it
keeps paragraphs, list items and link targets, and drops what is invisible in the HTML (the
``<head>``, styles, and the hidden preheader).

The HTML comes from our own templates with lead-supplied text escaped, so a single regular
expression over tags and text is enough, and it is several times faster than
``html.parser`` (this runs once per email sent).
"""

from __future__ import annotations

import html
import re

TOKEN = re.compile(
    r"<!--.*?-->"  # comment
    r"|<[!?][^>]*>"  # doctype, processing instruction
    r"|<(?P<closing>/?)(?P<tag>[a-zA-Z][a-zA-Z0-9]*)(?P<attributes>(?:[^>\"']|\"[^\"]*\"|'[^']*')*)>"
    r"|(?P<text>[^<]+|<)",
    re.DOTALL,
)
ATTRIBUTE = re.compile(r"""([a-zA-Z_:][-a-zA-Z0-9_:.]*)\s*=\s*("[^"]*"|'[^']*'|[^\s"'>]+)""")
BLOCK_TAGS = frozenset(
    {"p", "div", "table", "tr", "td", "th", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6",
     "blockquote", "section", "header", "footer", "article", "hr"}
)  # fmt: skip
VOID_TAGS = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}
)
HIDDEN_TAGS = frozenset({"head", "style", "script", "title", "template"})
HIDDEN_STYLE = re.compile(r"display\s*:\s*none", re.IGNORECASE)
# Structure is marked with characters that never occur in the text (and that str.split() does
# not count as whitespace), so all whitespace collapses in one pass before they become breaks.
PARAGRAPH, LINE = "\x00", "\x01"


def _attributes(source: str) -> dict[str, str]:
    return {
        name.lower(): html.unescape(value.strip("\"'")) for name, value in ATTRIBUTE.findall(source)
    }


def html_to_text(document: str) -> str:
    parts: list[str] = []
    links: list[tuple[str, int]] = []  # open <a>: its href, and where its text starts in parts
    # Inside an element the reader never sees: its tag, and how deeply it is nested in itself.
    # Only that tag is counted, so an unclosed <p> inside it cannot hide the rest.
    hidden_tag, hidden_depth = "", 0
    for token in TOKEN.finditer(document):
        text, tag = token["text"], token["tag"]
        if tag is None:
            if text is not None and not hidden_depth:
                parts.append(html.unescape(text))
            continue
        tag = tag.lower()
        closing = bool(token["closing"])
        if hidden_depth:
            if tag == hidden_tag:
                hidden_depth += -1 if closing else 1
            continue
        if closing:
            if tag in BLOCK_TAGS:
                parts.append(PARAGRAPH)
            elif tag == "a" and links:
                href, start = links.pop()
                label = "".join(parts[start:]).strip()
                target = href.removeprefix("mailto:")
                if href and not href.startswith("#") and target != label:
                    parts.append(f" ({target})" if label else target)
            continue
        source = token["attributes"]
        attributes = _attributes(source) if "=" in source else {}
        if tag in HIDDEN_TAGS or HIDDEN_STYLE.search(attributes.get("style", "")):
            if tag not in VOID_TAGS:
                hidden_tag, hidden_depth = tag, 1
        elif tag in BLOCK_TAGS:
            parts.append(PARAGRAPH)
        elif tag == "br":
            parts.append(LINE)
        elif tag == "li":
            parts.append(f"{LINE}- ")
        elif tag == "img":
            parts.append(attributes.get("alt", ""))
        elif tag == "a":
            links.append((attributes.get("href", ""), len(parts)))
    collapsed = " ".join("".join(parts).split())
    paragraphs = (
        paragraph.replace(f" {LINE}", LINE).replace(f"{LINE} ", LINE).replace(LINE, "\n").strip()
        for paragraph in collapsed.split(PARAGRAPH)
    )
    return "\n\n".join(paragraph for paragraph in paragraphs if paragraph) + "\n"


def link_targets(document: str) -> set[str]:
    """The ``href`` of every link in an HTML document (entities decoded)."""
    return {
        _attributes(token["attributes"]).get("href", "")
        for token in TOKEN.finditer(document)
        if token["tag"] and token["tag"].lower() == "a" and not token["closing"]
    } - {""}
