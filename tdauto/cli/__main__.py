"""``python -m tdauto.cli``: the ``tdauto`` command (the pools are started this way)."""

from tdauto.cli import main

main()
