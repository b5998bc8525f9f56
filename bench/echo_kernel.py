"""The floor under kernel_execute_rtt_ms: an ipykernel kernel that does nothing but
answer, with the same settings as sshdist's: no pre-reply sleep, and its output
flushed as sshdist's is (``sshdist_kernel.outputbarrier``).  With ``--stock`` it
flushes as ipykernel does (four round trips to the IOPub thread a cell)."""

from __future__ import annotations

import sys

from ipykernel.kernelapp import IPKernelApp
from ipykernel.kernelbase import Kernel
from traitlets import Float

from sshdist_kernel.kernel import OUTSTREAM
from sshdist_kernel.outputbarrier import OutputBeforeReply


class StockEchoKernel(Kernel):
    implementation = "echo"
    implementation_version = "1"
    language = "text"
    language_info = {"name": "text", "mimetype": "text/plain", "file_extension": ".txt"}
    banner = "echo"
    _execute_sleep = Float(0.0)

    async def do_execute(
        self,
        code,
        silent,
        store_history=True,
        user_expressions=None,
        allow_stdin=False,
        *,
        cell_id=None,
    ):
        if not silent:
            self.send_response(
                self.iopub_socket,
                "execute_result",
                {
                    "execution_count": self.execution_count,
                    "data": {"text/plain": code},
                    "metadata": {},
                },
            )
        return {
            "status": "ok",
            "execution_count": self.execution_count,
            "payload": [],
            "user_expressions": {},
        }


class EchoKernel(OutputBeforeReply, StockEchoKernel):
    pass


if __name__ == "__main__":
    if "--stock" in sys.argv:
        sys.argv.remove("--stock")
        IPKernelApp.launch_instance(kernel_class=StockEchoKernel)
    else:
        IPKernelApp.launch_instance(kernel_class=EchoKernel, outstream_class=OUTSTREAM)
