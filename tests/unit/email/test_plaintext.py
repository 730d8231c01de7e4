"""The plain-text alternative derived from an email's HTML."""

from __future__ import annotations

from flows.email.plaintext import html_to_text, link_targets


def test_paragraphs_lists_and_line_breaks_survive():
    html = (
        "<p>Hi <b>Ann</b>,\n   welcome.</p><ul><li>one</li><li>two</li></ul>"
        "<p>Line one<br>line two</p><div><p>Nested</p></div>"
    )
    assert (
        html_to_text(html) == "Hi Ann, welcome.\n\n- one\n- two\n\nLine one\nline two\n\nNested\n"
    )


def test_invisible_parts_are_dropped():
    html = (
        "<!DOCTYPE html><html><head><title>Subject</title><style>p { color: red }</style></head>"
        '<body><!-- a note --><div style="display: none">preheader <p>unclosed</div>'
        "<script>alert(1)</script><p>Visible</p></body></html>"
    )
    assert html_to_text(html) == "Visible\n"


def test_hidden_elements_nested_in_themselves_end_at_the_right_tag():
    html = '<div style="display:none"><div>inner</div>still hidden</div><p>shown</p>'
    assert html_to_text(html) == "shown\n"


def test_links_keep_their_target_unless_it_is_the_text():
    html = (
        '<p><a href="https://x.example/a?b=1&amp;c=2">Read it</a>, '
        '<a href="mailto:me@x.example">me@x.example</a>, <a href="#top">top</a>, '
        '<a href="https://x.example/bare"></a></p>'
    )
    assert html_to_text(html) == (
        "Read it (https://x.example/a?b=1&c=2), me@x.example, top, https://x.example/bare\n"
    )


def test_entities_are_decoded_and_images_give_their_alt_text():
    assert html_to_text('<p>Tom &amp; Jerry &lt;3 <img src="logo.png" alt="Logo"></p>') == (
        "Tom & Jerry <3 Logo\n"
    )


def test_link_targets_lists_every_href():
    html = (
        '<a href="https://a.example/?x=1&amp;y=2">A</a><a name="anchor">B</a><A HREF=\'/c\'>C</A>'
    )
    assert link_targets(html) == {"https://a.example/?x=1&y=2", "/c"}
