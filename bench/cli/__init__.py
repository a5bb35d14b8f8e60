"""The fanout command line: thin click commands, one module per area, that call library modules and never each other."""
