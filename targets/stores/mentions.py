"""Mentions: an ``@<user id>`` in a post's body names a user who gets the post in their home timeline too.

As in DeathStarBench's social network, a mention delivers the post to the mentioned user whether or not they follow
the author. The home timeline is then: the newest ``timeline_cap`` posts of the accounts the user follows, and of
the posts mentioning the user by accounts the user does not follow (a followed author's posts come the usual way:
by fan-out, or, for a celebrity in hybrid, from its author timeline; so no post is in a timeline twice). A
mention of oneself, or of a user that does not exist, is ignored.
"""

from __future__ import annotations

import re

#: ``@`` then a user id, not inside a word or an e-mail address (``a@3`` is not a mention) nor followed by one.
MENTION = re.compile(r"(?<![\w@])@(\d{1,18})(?!\w)")


def mentioned_ids(body: str) -> list[int]:
    """The user ids ``body`` mentions, each once, in order of first appearance."""
    return list(dict.fromkeys(int(m) for m in MENTION.findall(body)))
