"""Private local Redis and PostgreSQL servers (``fanout up`` / ``down`` / ``status``).

Neither measurement nor system under test: it may use :mod:`targets` (settings, errors), never :mod:`bench`.
"""
