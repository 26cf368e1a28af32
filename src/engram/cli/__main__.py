"""``python -m engram.cli``: the same as the ``engram`` script."""

from engram.cli import main

main()
