"""Asynchronous fan-out: the job queue (Redis Streams + Lua), follower batches, workers, worker processes, reports."""
