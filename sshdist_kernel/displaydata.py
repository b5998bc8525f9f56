"""Rich outputs a node's code sends (``d`` records, from ``(sshdist jupyter)`` in
jupyter.scm) as Jupyter mime bundles: text as text, binary data in base64, JSON parsed."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class DisplayData:
    """One rich output the node's code sent (``jupyter-display`` and its helpers): a
    Jupyter mime bundle, ready for ``display_data`` or IPython's ``display(raw=True)``.

    ``data`` maps each MIME type to text, to base64 text for binary data (a PNG given
    as a bytevector), or to the parsed value for JSON types; ``update`` says it
    replaces the output shown with ``display_id``."""

    data: dict[str, Any]
    display_id: str | None = None
    update: bool = False

    def bundle(self) -> dict[str, Any]:
        """``data`` with a ``text/plain`` entry, for front ends that show only text (a
        terminal, ``jupyter console``): the code's own, else what kind of output it is,
        as IPython prints ``<IPython.core.display.HTML object>``."""
        if "text/plain" in self.data:
            return self.data
        return {**self.data, "text/plain": f"<{', '.join(self.data) or 'empty'} output>"}


_TEXT_TYPES = ("application/javascript", "application/xml", "image/svg+xml")


def _is_json(mime: str) -> bool:
    return mime == "application/json" or mime.endswith("+json")


def _mime_value(mime: str, binary: bool, body: bytes) -> Any:
    """One bundle entry as Jupyter wants it: JSON parsed (text that is not JSON, or
    nested deeper than Python parses, is kept as text), bytes of a binary type in
    base64, everything else text."""
    textual = mime.startswith("text/") or mime.endswith("+xml") or mime in _TEXT_TYPES
    if binary and not textual and not _is_json(mime):
        return base64.b64encode(body).decode("ascii")
    text = body.decode("utf-8", "replace")
    if _is_json(mime):
        try:
            return json.loads(text)
        except (ValueError, RecursionError):
            return text
    return text


def display_data(payload: bytes) -> DisplayData:
    """A ``d`` record: ``KIND\\nID\\n``, then per MIME type ``MIME\\n``, T or B,
    ``LEN\\n`` and the bytes (see ``(sshdist framing)``)."""
    kind, display_id, rest = payload.split(b"\n", 2)
    data: dict[str, Any] = {}
    pos = 0
    while pos < len(rest):
        mime_end = rest.index(b"\n", pos)
        size_end = rest.index(b"\n", mime_end + 1)
        mime = rest[pos:mime_end].decode("utf-8", "replace")
        binary = rest[mime_end + 1 : mime_end + 2] == b"B"
        start = size_end + 1
        pos = start + int(rest[mime_end + 2 : size_end])
        data[mime] = _mime_value(mime, binary, rest[start:pos])
    return DisplayData(data, display_id.decode("utf-8", "replace") or None, kind == b"update")
