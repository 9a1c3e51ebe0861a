"""Redis key names of the streammood contract, under a configurable prefix (pure).

With the default prefix ``streammood``:

=================================  ===========  ==================================================
key                                type         content
=================================  ===========  ==================================================
``streammood:mood``                pub/sub      every mood message, all sources (JSON)
``streammood:mood:{source}``       stream       mood history of one source, field ``json``, capped
``streammood:changes:{source}``    stream       detected song/mood changes of one source, capped
``streammood:frames:{source}``     stream       feature frames of one source, field ``frame``
``streammood:sources:mood``        set          sources that have published moods
``streammood:sources:frames``      set          sources that have published feature frames
``streammood:metrics:{name}``      hash         counters of a publisher or worker
``streammood:lease:{source}``      string       id of the ``infer`` worker that owns a source
``streammood:cursor:{source}``     string       last frame entry id processed for a source
``streammood:workers``             sorted set   live ``infer`` workers, scored by lease expiry (ms)
``streammood:deadletter``          hash         sources given up on: source -> JSON (reason, counts)
``streammood:producer:{source}``   string       session id of the source's producer (expiring)
``streammood:session:{source}``    hash         the producer session: next seq, stream time, owner
``streammood:published:{source}``  hash         session and seq of the last mood published
=================================  ===========  ==================================================
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from streammood.errors import StreammoodError

DEFAULT_PREFIX = "streammood"

_SOURCE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_PREFIX_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")


class SourceIdError(StreammoodError):
    """A source id or key prefix that cannot be used in a Redis key."""


def validate_source(source: str) -> str:
    """Return ``source`` if it is a valid source id, else raise :class:`SourceIdError`.

    A source id is 1-64 characters: letters, digits, ``.``, ``_`` and ``-``, starting with a
    letter or digit (no spaces, no colons: it becomes part of a key name).
    """
    if not isinstance(source, str) or not _SOURCE_RE.match(source):
        raise SourceIdError(
            f"invalid source id {source!r}: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return source


def validate_prefix(prefix: str) -> str:
    """Return ``prefix`` if it is a valid key prefix, else raise :class:`SourceIdError`."""
    if not isinstance(prefix, str) or not _PREFIX_RE.match(prefix) or prefix.endswith(":"):
        raise SourceIdError(
            f"invalid key prefix {prefix!r}: use 1-64 letters, digits, '.', '_', '-' or ':' "
            "(not ending with ':')"
        )
    return prefix


@dataclass(frozen=True)
class Keys:
    """Key names under one prefix.

    Examples
    --------
    >>> Keys().mood_stream("radio1")
    'streammood:mood:radio1'
    """

    prefix: str = DEFAULT_PREFIX
    cluster: bool = False
    """Redis Cluster layout: every per-source key (and the source's mood channel) carries the
    source id as a hash tag, ``streammood:mood:{radio1}``, so a source lives on one shard and
    its scripts touch one slot."""

    def __post_init__(self) -> None:
        validate_prefix(self.prefix)

    @classmethod
    def for_client(cls, client: object, prefix: str = DEFAULT_PREFIX) -> Keys:
        """The layout for ``client``: the cluster one for a ``redis.cluster.RedisCluster``."""
        from redis.cluster import RedisCluster

        return cls(prefix, cluster=isinstance(client, RedisCluster))

    def _src(self, source: str) -> str:
        validate_source(source)
        return f"{{{source}}}" if self.cluster else source

    def mood_channel_for(self, source: str) -> str:
        """Where the moods of ``source`` are published: :attr:`mood_channel` (every source), or
        in the cluster layout the source's sharded channel ``{prefix}:mood:{{source}}``
        (``SPUBLISH``)."""
        return f"{self.prefix}:mood:{self._src(source)}" if self.cluster else self.mood_channel

    @property
    def mood_channel(self) -> str:
        """Pub/sub channel carrying every mood message."""
        return f"{self.prefix}:mood"

    def mood_stream(self, source: str) -> str:
        """Capped stream with the mood history of ``source``."""
        return f"{self.prefix}:mood:{self._src(source)}"

    def changes_stream(self, source: str) -> str:
        """Capped stream of the changes detected in ``source`` (field ``json``)."""
        return f"{self.prefix}:changes:{self._src(source)}"

    def frames_stream(self, source: str) -> str:
        """Capped stream with the feature frames of ``source``."""
        return f"{self.prefix}:frames:{self._src(source)}"

    @property
    def mood_sources(self) -> str:
        """Set of source ids that have published moods."""
        return f"{self.prefix}:sources:mood"

    @property
    def frame_sources(self) -> str:
        """Set of source ids that have published feature frames."""
        return f"{self.prefix}:sources:frames"

    def metrics(self, name: str) -> str:
        """Hash of counters of a publisher or worker (``name`` is a source or worker id)."""
        return f"{self.prefix}:metrics:{validate_source(name)}"

    def lease(self, source: str) -> str:
        """Which ``infer`` worker owns ``source`` (expiring string)."""
        return f"{self.prefix}:lease:{self._src(source)}"

    def cursor(self, source: str) -> str:
        """Entry id of the last feature frame of ``source`` that was processed."""
        return f"{self.prefix}:cursor:{self._src(source)}"

    @property
    def workers(self) -> str:
        """Sorted set of live ``infer`` worker ids, scored by heartbeat expiry (Unix ms)."""
        return f"{self.prefix}:workers"

    @property
    def dead_letter(self) -> str:
        """Hash of dead-lettered sources: source id -> JSON reason and counts."""
        return f"{self.prefix}:deadletter"

    def producer(self, source: str) -> str:
        """Producer lease of ``source``: the session id of the ``capture``/``listen`` that
        produces it (expiring string)."""
        return f"{self.prefix}:producer:{self._src(source)}"

    def session(self, source: str) -> str:
        """Hash of ``source``'s producer session: ``session``, ``owner``, ``started_at``,
        ``previous``, ``next_seq``, ``t_next``, ``updated_at``."""
        return f"{self.prefix}:session:{self._src(source)}"

    def published(self, source: str) -> str:
        """Hash ``{session, seq}`` of the last mood published for ``source`` (idempotent
        publishing: a message of the same session with a seq not above it is not written
        again)."""
        return f"{self.prefix}:published:{self._src(source)}"
