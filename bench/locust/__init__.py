"""Locust: the locustfile, sub-millisecond stats, the web UI's fan-out tab and its templates."""
