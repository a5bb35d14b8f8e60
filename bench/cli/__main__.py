"""``python -m bench.cli``: the fanout command line."""

from bench.cli.main import main

main()
