"""Timeline strategies behind one async interface (base), found by name in the registry: push, pull, hybrid."""
