"""Scenarios: the Scenario interface and registry, steady and spike, one strategy's run, and the oracle."""
