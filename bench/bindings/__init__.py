"""Bindings: how one workload operation becomes a call on a target, one module per transport."""
