"""Reading a magic's line where Python and Scheme meet: ``%dist_map -o r nodes[:2]
(lambda (x) x) range(3)`` has options, a Python expression, a Scheme datum and Python
again, which no one tokenizer reads.  Options are cut off first (and parsed by
``magic_arguments``); the rest is left as typed.
"""

from __future__ import annotations

from collections.abc import Collection


def leading_options(text: str, flags: Collection[str] = ()) -> tuple[str, str]:
    """``text`` cut after its leading options (``-o NAME --stream ...``; ``flags`` are
    those that take no value): the options for ``parse_argstring``, and the rest
    (Python and Scheme) untouched."""
    taken: list[str] = []
    rest = text.strip()
    while rest.startswith("-"):
        word, rest = _first_word(rest)
        taken.append(word)
        attached = "=" in word or (not word.startswith("--") and len(word) > 2)
        if word not in flags and not attached and rest:
            value, rest = _first_word(rest)
            taken.append(value)
    return " ".join(taken), rest


def _first_word(text: str) -> tuple[str, str]:
    parts = text.split(None, 1)
    return parts[0], parts[1] if len(parts) > 1 else ""


def python_expression_end(text: str) -> int:
    """Where the Python expression that starts ``text`` ends: at the first space outside
    brackets and quotes (``nodes``, ``['hpc1', 'hpc2']``, ``nodes[:2]``)."""
    depth, quote, i = 0, "", 0
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == quote:
                quote = ""
        elif c in "'\"":
            quote = c
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif c.isspace() and depth == 0:
            return i
        i += 1
    return i
