"""Follower graphs: generation from networkx models, SNAP edge lists, statistics, and bulk loading into Postgres."""
