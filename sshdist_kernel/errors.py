"""The two kinds of failure of the seed chapter, and the few subclasses a caller acts on."""

from __future__ import annotations


class NodeError(Exception):
    """Recoverable: the node is unreachable or broke, so the job may run on another node."""


class ConnectError(NodeError):
    """The host could not be reached (refused, unresolvable, timed out, proxy failed)."""


class AuthenticationError(NodeError):
    """The host refused every key offered."""


class HostKeyError(NodeError):
    """The host's key is unknown or differs from known_hosts; nothing was sent."""

    def __init__(self, message: str, host: str, fingerprint: str) -> None:
        super().__init__(message)
        self.host = host
        self.fingerprint = fingerprint


class SshConfigError(NodeError):
    """An ssh_config file cannot be read as OpenSSH reads it: every host would fail the
    same way, so ``make_nodes(on_error="skip")`` stops rather than skipping them all."""


class NodeTimeoutError(NodeError):
    """The node did not answer within the time allowed."""


class EvalCancelled(NodeError):
    """The caller stopped waiting (its ``cancel`` event was set): the evaluation is
    interrupted in the background and the REPL keeps its definitions if it stops."""


class AllNodesFailedError(NodeError):
    """Every node of a distributed call failed; ``failures`` says which and why."""

    def __init__(self, message: str, failures: tuple[object, ...] = ()) -> None:
        super().__init__(message)
        self.failures = failures


class NodeReplError(Exception):
    """Not recoverable: the code itself failed in the node's REPL; it would fail anywhere.

    ``key`` is Guile's error key (``wrong-type-arg``, ``unbound-variable``, ...),
    ``message`` Guile's own text, ``output``/``error_output`` what the code printed first,
    ``job`` the job that failed when the error comes from ``distribute`` or ``dist_map``.
    """

    def __init__(
        self,
        message: str,
        *,
        key: str = "error",
        node: object = None,
        output: str = "",
        error_output: str = "",
        job: object = None,
    ) -> None:
        super().__init__(message)
        self.key = key
        self.message = message
        self.node = node
        self.output = output
        self.error_output = error_output
        self.job = job

    def __str__(self) -> str:
        where = f" on {self.node}" if self.node is not None else ""
        return f"{self.key}{where}: {self.message}"


class IncompleteInputError(NodeReplError):
    """The source ends inside a form (``(+ 1``); the REPL would wait for ever, so it is not sent."""
