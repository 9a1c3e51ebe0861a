"""Redis URLs and connections: which URL to use, how to print it, how to connect."""

from __future__ import annotations

import os
from urllib.parse import parse_qsl, urlencode, urlsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from streammood.errors import StreammoodError

ENV_REDIS_URL = "STREAMMOOD_REDIS_URL"
SCHEMES = ("redis", "rediss", "unix")


class RedisUnavailableError(StreammoodError):
    """Redis is not reachable, refuses the credentials, or its URL is invalid."""


def resolve_redis_url(cli_url: str | None) -> str | None:
    """The configured Redis URL: ``--redis-url`` wins over ``$STREAMMOOD_REDIS_URL``; ``None``
    when neither is set (or both are empty)."""
    if cli_url:
        return cli_url
    return os.environ.get(ENV_REDIS_URL) or None


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (user names are kept).

    Examples
    --------
    >>> redact_url("redis://:s3cret@cache:6379/0")
    'redis://:***@cache:6379/0'
    >>> redact_url("unix:///run/redis.sock?db=1&password=s3cret")
    'unix:///run/redis.sock?db=1&password=***'
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable Redis URL>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        if ":" in userinfo:  # a lone user name (no colon) is not a secret
            userinfo = userinfo.split(":", 1)[0] + ":***"
        netloc = f"{userinfo}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(k.lower() == "password" for k, _ in pairs):
            query = urlencode(
                [(k, "***" if k.lower() == "password" else v) for k, v in pairs], safe="*/"
            )
    out = f"{parts.scheme}://{netloc}{parts.path}" if parts.scheme else f"{netloc}{parts.path}"
    if query:
        out += f"?{query}"
    if parts.fragment:
        out += f"#{parts.fragment}"
    return out


def describe_client(client: redis.Redis) -> str:
    """Where a client points, without secrets (``redis://host:port/db`` or ``unix://path``)."""
    kw = client.connection_pool.connection_kwargs
    db = kw.get("db", 0)
    if kw.get("path"):
        return f"unix://{kw['path']}?db={db}"
    ssl = client.connection_pool.connection_class.__name__.startswith("SSL")
    scheme = "rediss" if ssl else "redis"
    return f"{scheme}://{kw.get('host', 'localhost')}:{kw.get('port', 6379)}/{db}"


def connect(url: str, *, timeout: float = 2.0, check: bool = True) -> redis.Redis:
    """A client for ``url`` (``redis://``, ``rediss://``, ``unix://``; passwords, db numbers).

    Parameters
    ----------
    url : str
        Redis URL.
    timeout : float
        Socket connect and read timeout, seconds.
    check : bool
        PING once and raise if that fails.

    Raises
    ------
    RedisUnavailableError
        Invalid URL, server unreachable or credentials refused; the message shows the URL
        with its password redacted.
    """
    shown = redact_url(url)
    scheme = urlsplit(url).scheme if "://" in url else ""
    if scheme not in SCHEMES:
        raise RedisUnavailableError(
            f"invalid Redis URL {shown}: scheme must be redis://, rediss:// or unix://"
        )
    try:
        client = redis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 1),
            health_check_interval=30,
        )
    except ValueError as exc:
        raise RedisUnavailableError(f"invalid Redis URL {shown}: {_scrub(str(exc), url)}") from None
    if check:
        try:
            client.ping()
        except redis.exceptions.AuthenticationError:
            client.close()
            raise RedisUnavailableError(f"Redis at {shown} refused the credentials") from None
        except redis.exceptions.RedisError as exc:
            client.close()
            raise RedisUnavailableError(
                f"cannot reach Redis at {shown}: {_scrub(str(exc), url)}"
            ) from None
    return client


def is_reachable(url: str, timeout: float = 0.5) -> bool:
    """Whether a Redis server answers PING at ``url``."""
    try:
        connect(url, timeout=timeout).close()
    except RedisUnavailableError:
        return False
    return True


def _scrub(text: str, url: str) -> str:
    """Remove the password of ``url`` from an error text, should a library echo it."""
    text = text.replace(url, redact_url(url)).splitlines()[0] if text else text
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    if password:
        text = text.replace(password, "***")
    for key, value in parse_qsl(urlsplit(url).query):
        if key.lower() == "password" and value:
            text = text.replace(value, "***")
    return text
