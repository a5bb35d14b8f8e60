"""The ``fanout`` subcommands, one module per area, imported only when their command runs."""
