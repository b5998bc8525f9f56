"""Sphinx configuration: the sshdist-kernel manual (``make docs``)."""

from __future__ import annotations

import contextlib
import importlib
import inspect
import io
import os
import re
import sys
from importlib.metadata import version as _version

from docutils import nodes
from docutils.parsers.rst import Directive
from docutils.statemachine import StringList

# argparse wraps help (the magics' docstrings, the commands' --help) to the terminal's
# width: the manual is the same whoever builds it.
os.environ["COLUMNS"] = "80"

project = "sshdist-kernel"
author = "the sshdist-kernel developers"
copyright = "2026, " + author
release = _version("sshdist-kernel")
version = release

extensions = ["myst_parser", "sphinx.ext.autodoc"]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

# MyST: ``{include}`` of README sections, definition lists, ::: fences.
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# The API is documented where it is exported (``sshdist_kernel.dist_map``), in the order
# of the pages; signatures keep their type hints, shortened.
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_typehints_format = "short"
autodoc_preserve_defaults = True
autodoc_inherit_docstrings = False

# Blocks without a language (shell sessions, usage lines) are shown as they are.
highlight_language = "none"

html_theme = "furo"
html_title = "sshdist-kernel"
html_static_path: list[str] = []

_ARGPARSE_SECTION = re.compile(r"^(positional arguments|options|optional arguments):$")


def _magic_markdown(doc: str) -> list[str]:
    """A magic's docstring is IPython's argparse help: a ``::`` block with the usage
    line, the text (reST inline literals), then the argument sections.  As Markdown for
    the page around it: the usage and the sections as the terminal shows them
    (``%dist_map?``), the text as text."""
    lines = inspect.cleandoc(doc).splitlines()
    out: list[str] = []
    block = False  # inside a fenced block
    for line in lines:
        if line.strip() == "::" or _ARGPARSE_SECTION.match(line):
            if block:
                out.append("```")
            if line.strip() != "::":
                out += ["", f"**{line.strip()[:-1]}**", ""]
            out.append("```none")
            block = True
        elif block and line and not line.startswith(" "):
            out += ["```", "", line]
            block = False
        elif block:
            out.append(line)
        else:
            out.append(line.replace("``", "`"))
    if block:
        out.append("```")
    # No blank lines just inside a fence.
    text = "\n".join(out)
    text = re.sub(r"```none\n\n+", "```none\n", text)
    text = re.sub(r"\n\n+```(\n|$)", r"\n```\1", text)
    return text.splitlines()


class MagicHelp(Directive):
    """``{magic-help} NAME``: the help of ``%NAME`` (``SshdistMagics.NAME``'s docstring,
    as ``%NAME?`` shows it), with a link target ``magic-NAME``."""

    required_arguments = 1

    def run(self):
        from sshdist_magics import SshdistMagics

        name = self.arguments[0]
        doc = getattr(SshdistMagics, name).__doc__
        target = nodes.target("", "", ids=[f"magic-{name}"])
        container = nodes.container(classes=["magic-help"])
        # The page is MyST Markdown, and so is what is parsed inside it.
        self.state.nested_parse(StringList(_magic_markdown(doc), f"<%{name}>"), 0, container)
        return [target, container]


class ProgramHelp(Directive):
    """``{program-help} MODULE ARG...``: what ``python -m MODULE ARG... --help`` prints,
    run at build time, so the command-line reference is the commands' own."""

    required_arguments = 1
    optional_arguments = 10

    def run(self):
        module, *args = self.arguments
        text = io.StringIO()
        with contextlib.redirect_stdout(text):
            try:
                importlib.import_module(module).main([*args, "--help"])
            except SystemExit:
                pass
        # The --sys-prefix help names the build's own environment: not the reader's.
        help_text = text.getvalue().replace(sys.prefix, "<the environment's prefix>")
        return [nodes.literal_block(help_text, help_text)]


def setup(app):
    app.add_directive("magic-help", MagicHelp)
    app.add_directive("program-help", ProgramHelp)
