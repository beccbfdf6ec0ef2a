"""The report (and the leaderboard) as one self-contained HTML page: the Markdown document
rendered by Python-Markdown (so the two never disagree), with inline CSS, a list of links to
its sections, and every figure inlined as a base64 PNG: no script, no request.

Raw HTML in the Markdown is escaped, never passed through: the text comes from runs and
submissions (selector labels, error messages), and a page must not run what they carry.
"""
from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any, Callable, Iterable
from xml.etree import ElementTree

import markdown
from markdown.extensions import Extension
from markdown.treeprocessors import Treeprocessor

from delbench.reports.markdown import render_markdown

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #1b1f24; background: #fff; }
main { max-width: 1200px; margin: 0 auto; padding: 1.5rem 2rem 4rem; }
h1 { font-size: 1.6rem; border-bottom: 2px solid #d0d7de; padding-bottom: .4rem; }
h2 { font-size: 1.3rem; margin-top: 2.2rem; border-bottom: 1px solid #d0d7de; padding-bottom: .3rem; }
h3 { font-size: 1.05rem; margin-top: 1.6rem; }
p, li { line-height: 1.5; max-width: 95ch; }
code { font-family: ui-monospace, monospace; font-size: .9em; background: #f3f4f6; padding: .1em .3em; border-radius: 3px; }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; font-size: .86rem; margin: .6rem 0 1rem; }
th, td { border: 1px solid #d0d7de; padding: .3rem .55rem; text-align: right; white-space: nowrap; }
th { background: #f6f8fa; }
th:first-child, td:first-child { text-align: left; }
tbody tr:nth-child(even) { background: #fafbfc; }
figure { margin: 1.2rem 0 2rem; }
figure img { max-width: 100%; height: auto; border: 1px solid #e5e7eb; }
figcaption { font-size: .9rem; color: #57606a; margin-top: .3rem; max-width: 95ch; }
nav { font-size: .9rem; margin: .4rem 0 1rem; }
nav a { margin-right: .9rem; }
"""


def _as_text(parent: ElementTree.Element, child: ElementTree.Element, text: str) -> None:
    """Replace ``child`` of ``parent`` by plain ``text`` (followed by the child's tail)."""
    at = list(parent).index(child)
    joined = text + (child.tail or "")
    if at == 0:
        parent.text = (parent.text or "") + joined
    else:
        parent[at - 1].tail = (parent[at - 1].tail or "") + joined
    parent.remove(child)


class _Page(Treeprocessor):
    """The page's own shape: an image alone in a paragraph becomes a figure with its caption
    (its ``src`` through ``image``), a table is wrapped to scroll sideways, and the level-2
    headings are linked from a nav under the title. Any other image or link (a label or an
    error message of a run or submission that reads as Markdown) becomes its text: the page
    fetches nothing and links nowhere but to its own sections."""

    def __init__(self, md: markdown.Markdown, image: Callable[[str], str]) -> None:
        super().__init__(md)
        self.image = image

    def run(self, root: ElementTree.Element) -> None:
        parents = {child: parent for parent in root.iter() for child in parent}
        for element in [e for e in root.iter() if e.tag in ("a", "img")]:
            is_figure = element.tag == "img" and parents[element] in root and len(parents[element]) == 1 \
                and parents[element].tag == "p" and not (parents[element].text or "").strip() \
                and not (element.tail or "").strip()
            if element.tag == "a" or not is_figure:
                _as_text(parents[element], element, element.get("alt", "") if element.tag == "img"
                         else "".join(element.itertext()))
        for index, element in enumerate(list(root)):
            if element.tag == "p" and len(element) == 1 and element[0].tag == "img" \
                    and not (element.text or "").strip() and not (element[0].tail or "").strip():
                alt = element[0].get("alt", "")
                figure = ElementTree.Element("figure")
                ElementTree.SubElement(figure, "img", {"src": self.image(element[0].get("src", "")), "alt": alt})
                ElementTree.SubElement(figure, "figcaption").text = alt
                figure.tail = element.tail
                root[index] = figure
            elif element.tag == "table":
                wrap = ElementTree.Element("div", {"class": "table-wrap"})
                wrap.tail, element.tail = element.tail, None
                wrap.append(element)
                root[index] = wrap
        if len(root) and root[0].tag == "h1":
            nav = ElementTree.Element("nav")
            nav.tail = "\n"
            for heading in (e for e in root if e.tag == "h2"):
                link = ElementTree.SubElement(nav, "a", {"href": f"#{heading.get('id')}"})
                link.text, link.tail = "".join(heading.itertext()), " "
            root.insert(1, nav)


class _PageExtension(Extension):
    def __init__(self, image: Callable[[str], str]) -> None:
        super().__init__()
        self.image = image

    def extendMarkdown(self, md: markdown.Markdown) -> None:  # noqa: N802 (Python-Markdown's name)
        md.preprocessors.deregister("html_block")  # raw HTML is text here, escaped
        md.inlinePatterns.deregister("html")
        md.treeprocessors.register(_Page(md, self.image), "delbench_page", 0)  # after the heading ids


def markdown_to_html(text: str, image: Callable[[str], str], title: str) -> str:
    """The Markdown document ``text`` as one HTML page titled ``title``. ``image(src)`` returns
    the ``src`` to use for a figure, e.g. a ``data:`` URI, so the page needs nothing beside
    it. The CSS is inline and there is no script."""
    body = markdown.markdown(text, extensions=["tables", "toc", _PageExtension(image)], output_format="html")
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n<main>\n{body}\n"
            "</main>\n</body>\n</html>\n")


def render_html(summary: dict[str, Any], figures: Iterable[tuple[str, str]], directory: str | Path) -> str:
    """The report as one self-contained HTML page: the Markdown document, with each figure
    (a PNG in ``directory``) inlined as base64."""
    directory = Path(directory)

    def inline(src: str) -> str:
        return "data:image/png;base64," + base64.b64encode((directory / src).read_bytes()).decode("ascii")

    return markdown_to_html(render_markdown(summary, figures), inline,
                            f"delbench report: {summary['protocol']} (protocol v{summary['protocol_version']})")
