"""Measurement logic of the ``fanout perf`` commands that outgrew their CLI modules."""
