"""The stores: connections and the namespace, the Postgres source of truth, Redis timelines and post cache, counters.

The one place that knows the SQL of the source-of-truth tables and the Redis key layout; a Redis Cluster backend
goes here."""
