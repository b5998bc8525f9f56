"""Guile-SSH's distributed forms in Python: nodes over real SSH, each with a Guile REPL."""

from __future__ import annotations

import logging
from importlib.metadata import PackageNotFoundError, version

from .displaydata import DisplayData
from .dist import (
    DistCall,
    DistEvent,
    DistList,
    DistTuple,
    EventCallback,
    JobMove,
    NodeFailure,
    NodeOutput,
    dist_map,
    dist_map_async,
    distribute,
    distribute_async,
)
from .errors import (
    AllNodesFailedError,
    AuthenticationError,
    ConnectError,
    HostKeyError,
    IncompleteInputError,
    NodeError,
    NodeReplError,
    NodeTimeoutError,
    SshConfigError,
)
from .hostlist import compress_hosts, expand_hosts, read_hostfile, slurm_hosts
from .job import (
    Job,
    assign_eval,
    assign_map,
    hand_out_job,
    is_job,
    job_data,
    job_node,
    job_proc,
    job_to_sexp,
    job_type,
    make_job,
    set_job_node,
    split,
)
from .makenodes import MAX_CONNECTING, MadeNodes
from .node import (
    Node,
    is_node,
    make_node,
    make_nodes,
    node_eval,
    node_guile_version,
    node_loadavg,
    node_open_rrepl,
    node_repl_port,
    node_session,
    with_ssh,
)
from .replchannel import EvalResult, FormResult
from .rrepl import Rrepl, rrepl_eval, rrepl_skip_to_prompt
from .rreplshell import rrepl
from .server import UNIX, node_run_server, node_server_running, node_stop_server
from .session import Session
from .sexp import Char, Keyword, Opaque, Pair, SexpError, Symbol
from .transports import make_session

try:
    __version__ = version("sshdist-kernel")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

# A library logs, the application decides where it goes (failovers are WARNINGs).
logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "AllNodesFailedError",
    "DistCall",
    "DistEvent",
    "DistList",
    "DistTuple",
    "EventCallback",
    "Job",
    "JobMove",
    "NodeFailure",
    "NodeOutput",
    "assign_eval",
    "compress_hosts",
    "expand_hosts",
    "read_hostfile",
    "slurm_hosts",
    "assign_map",
    "dist_map",
    "dist_map_async",
    "distribute",
    "distribute_async",
    "hand_out_job",
    "is_job",
    "job_data",
    "job_node",
    "job_proc",
    "job_to_sexp",
    "job_type",
    "make_job",
    "set_job_node",
    "split",
    "UNIX",
    "AuthenticationError",
    "Char",
    "ConnectError",
    "DisplayData",
    "EvalResult",
    "FormResult",
    "HostKeyError",
    "IncompleteInputError",
    "Keyword",
    "MAX_CONNECTING",
    "MadeNodes",
    "Node",
    "NodeError",
    "NodeReplError",
    "NodeTimeoutError",
    "SshConfigError",
    "Opaque",
    "Pair",
    "Rrepl",
    "Session",
    "SexpError",
    "Symbol",
    "is_node",
    "make_node",
    "make_nodes",
    "make_session",
    "node_eval",
    "node_guile_version",
    "node_loadavg",
    "node_open_rrepl",
    "node_repl_port",
    "node_run_server",
    "node_server_running",
    "node_session",
    "node_stop_server",
    "rrepl",
    "rrepl_eval",
    "rrepl_skip_to_prompt",
    "with_ssh",
]
