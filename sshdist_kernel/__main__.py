"""``python -m sshdist_kernel install|list|remove``: kernelspecs for nodes."""

import sys

from .kernelspec import main

sys.exit(main())
