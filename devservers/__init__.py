"""Private local Redis and PostgreSQL servers for fanout up / down / status: neither measurement nor system under test."""
