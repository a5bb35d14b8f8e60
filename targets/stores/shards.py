"""Timeline shards on a Redis Cluster: the hash tag each shard's keys carry.

A cluster runs a Lua call only when every key it declares hashes to one slot. Tagging each user's keys with its own id
(``{<user>}``, the single-server layout) spreads users over every slot, so one call per batch of followers is
impossible there. On a cluster a user's keys carry its shard's tag instead (s = user id mod S;
:func:`targets.stores.timelines.user_key`): all of a shard's keys share one slot, a fan-out batch is split by shard,
and each shard's followers are written by one call whose keys are all declared. S defaults to
:data:`SHARDS_PER_PRIMARY` per primary; each shard's tag is chosen so that the shards are dealt round-robin over the
primaries (a tag is only a string: ``k.j`` for the first j whose slot the wanted primary serves), so every primary
holds the same number of shards whatever CRC16 makes of the tags.
"""

from __future__ import annotations

from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from targets.stores.server_info import AnyRedis

#: Shards per primary by default: enough that each primary's share of a batch is a few calls.
SHARDS_PER_PRIMARY = 4
#: The most candidate tags tried per shard before giving up on balance (a slot range is never that unlucky).
TAG_SEARCH = 100_000


def shard_tags(redis: AnyRedis, shards: int | None = None) -> list[str] | None:
    """One hash tag per shard, dealt round-robin over the cluster's primaries (by slot ownership); None on one server
    (a user's keys are tagged with its own id there)."""
    if not isinstance(redis, RedisCluster):
        return None
    primaries = sorted(redis.get_primaries(), key=lambda n: n.name)
    count = shards or SHARDS_PER_PRIMARY * len(primaries)
    tags = []
    for k in range(count):
        wanted = primaries[k % len(primaries)].name
        for j in range(TAG_SEARCH):
            tag = f"{k}.{j}"
            if redis.nodes_manager.get_node_from_slot(key_slot(tag.encode())).name == wanted:
                tags.append(tag)
                break
        else:  # pragma: no cover - a primary serving so few slots that no candidate lands there
            tags.append(f"{k}")
    return tags
