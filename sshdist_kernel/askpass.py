"""OpenSSH's SSH_ASKPASS helper: relays ssh's prompt to the Python process that started
ssh, over the private Unix socket named by ``SSHDIST_ASKPASS_SOCKET``, and prints the
answer it gets back for ssh to read.  Nothing is written anywhere else.

Request: the prompt's text, a NUL, then ``SSH_ASKPASS_PROMPT`` (``confirm``, ``none``
or empty).  Reply: ``y`` and the answer, or ``n`` (no answer: ssh gives up that way).
Run by ssh as ``python askpass.py PROMPT``; standard library only, so it starts fast.
"""

from __future__ import annotations

import os
import socket
import sys

WAIT = 3600.0
"""Seconds the helper waits for a person to answer before it gives up."""


def main(argv: list[str]) -> int:
    path = os.environ.get("SSHDIST_ASKPASS_SOCKET")
    if not path:
        print("sshdist askpass: SSHDIST_ASKPASS_SOCKET is not set", file=sys.stderr)
        return 2
    prompt = argv[1] if len(argv) > 1 else ""
    hint = os.environ.get("SSH_ASKPASS_PROMPT", "")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(WAIT)
            s.connect(path)
            s.sendall(prompt.encode("utf-8", "surrogateescape") + b"\0" + hint.encode())
            s.shutdown(socket.SHUT_WR)
            reply = bytearray()
            while chunk := s.recv(4096):
                reply += chunk
    except OSError as exc:
        print(f"sshdist askpass: no one to ask ({exc})", file=sys.stderr)
        return 1
    if not reply.startswith(b"y"):
        return 1
    sys.stdout.buffer.write(bytes(reply[1:]) + b"\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
