"""The systems under test: store access, the three timeline strategies, the fan-out worker, the HTTP service.

Nothing in this package imports :mod:`bench`; the harness drives these targets, never the other way round.
"""
