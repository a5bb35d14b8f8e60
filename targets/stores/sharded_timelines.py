"""Home timelines for a Redis Cluster: grouped into shards by hash tag, so a fan-out batch is one Lua call per shard.

A cluster runs a Lua call only when every key it declares hashes to one slot. Tagging each user's timeline with its
own id (``{<user>}``, the single-server layout) spreads users over every slot, so one call per batch of followers is
impossible there. Here a user's timeline key is ``{prefix}{owner}:home:{<tag of shard s>}<user>`` with s = user mod S:
all timelines of a shard share one slot, a batch is split by shard, and each shard's followers are written by one
call whose keys are all declared (ZADD + cap trim, as the single-server script), the shards' calls running
concurrently on their nodes. S defaults to :data:`SHARDS_PER_PRIMARY` per primary; each shard's tag is chosen so
that the shards are dealt round-robin over the primaries (a tag is only a string: ``k.j`` for the first j whose slot
the wanted primary serves), so every primary holds the same number of shards whatever CRC16 makes of the tags.

This is the cluster backend's home-timeline store (``fanout perf fanout --redis-cluster``, and the failover test
write through it); the strategies themselves do not use it yet (README, "Scale-out").
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import NoScriptError

from targets.stores.server_info import AnyRedis

#: Shards per primary by default: enough that each primary's share of a batch is a few calls.
SHARDS_PER_PRIMARY = 4
#: The most candidate tags tried per shard before giving up on balance (a slot range is never that unlucky).
TAG_SEARCH = 100_000

# KEYS: the shard's timelines (one slot). ARGV[1] post id, ARGV[2] cap. ZADD the post to each and trim the ones that
# grew; returns the entries added (a repeated call adds and changes nothing).
_ADD_TO_SHARD = """
local id, keep, added = ARGV[1], -(tonumber(ARGV[2]) + 1), 0
for i = 1, #KEYS do
  if redis.call('ZADD', KEYS[i], id, id) == 1 then
    added = added + 1
    redis.call('ZREMRANGEBYRANK', KEYS[i], 0, keep)
  end
end
return added
"""


def shard_tags(redis: AnyRedis, shards: int | None = None) -> list[str]:
    """One hash tag per shard, dealt round-robin over the cluster's primaries (by slot ownership); on one server
    one shard, tag ``0``."""
    if not isinstance(redis, RedisCluster):
        return ["0"]
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


class ShardedTimelines:
    """One owner's home timelines in S shards (see the module docstring)."""

    def __init__(self, redis: AnyRedis, prefix: str, owner: str, cap: int, tags: Sequence[str]) -> None:
        if not tags:
            raise ValueError("no shard tags")
        self.redis = redis
        self.prefix = f"{prefix}{owner}:home:"
        self.cap = cap
        self.tags = list(tags)
        self._script = redis.register_script(_ADD_TO_SHARD)

    @property
    def shards(self) -> int:
        """How many shards the timelines are grouped in."""
        return len(self.tags)

    def key(self, user_id: int) -> str:
        """The user's timeline key: tagged with its shard's tag."""
        return f"{self.prefix}{{{self.tags[user_id % len(self.tags)]}}}{user_id}"

    def by_shard(self, user_ids: Sequence[int]) -> dict[int, list[int]]:
        """The users grouped by shard."""
        groups: dict[int, list[int]] = defaultdict(list)
        for u in user_ids:
            groups[u % len(self.tags)].append(u)
        return groups

    async def add_to_many(self, user_ids: Sequence[int], post_id: int) -> int:
        """Add one post to many timelines: one call per shard, sent in one pipeline (one round trip per node, the
        nodes concurrently); returns entries added."""
        groups = self.by_shard(user_ids)
        if len(groups) == 1:
            ((_, users),) = groups.items()
            return int(await self._script(keys=[self.key(u) for u in users], args=[post_id, self.cap]))
        for attempt in (1, 2):
            pipe = self.redis.pipeline(transaction=False)
            for users in groups.values():
                pipe.evalsha(self._script.sha, len(users), *(self.key(u) for u in users), post_id, self.cap)
            try:
                return sum(int(n) for n in await pipe.execute())
            except NoScriptError:
                if attempt == 2:
                    raise
                # A node without the script (new, or a promoted replica: script caches are not replicated): load it
                # on every primary and send the batch again (a repeated delivery adds nothing).
                await self.redis.script_load(_ADD_TO_SHARD)
        raise AssertionError("unreachable")

    async def page(self, user_id: int, limit: int, before: int | None = None) -> list[int]:
        """Post ids below ``before`` (exclusive), newest first, at most ``limit``."""
        top = "+inf" if before is None else f"({before}"
        ids = await self.redis.zrevrangebyscore(self.key(user_id), top, "-inf", start=0, num=limit)
        return [int(i) for i in ids]

    async def holding(self, user_ids: Sequence[int], post_id: int) -> int:
        """How many of the users' timelines hold the post (ZSCORE per user, pipelined per node)."""
        pipe = self.redis.pipeline(transaction=False)
        for u in user_ids:
            pipe.zscore(self.key(u), post_id)
        return sum(score is not None for score in await pipe.execute())
