"""IPython magics for sshdist-kernel (``%load_ext sshdist_magics``).

They arrive with a later issue."""
