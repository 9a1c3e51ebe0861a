"""Redis URLs and connections: which URL to use, how to print it, how to connect."""

from __future__ import annotations

import os
from urllib.parse import parse_qsl, urlencode, urlsplit

import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.exceptions import RedisClusterException
from redis.retry import Retry

from streammood.errors import StreammoodError

ENV_REDIS_URL = "STREAMMOOD_REDIS_URL"
SCHEMES = ("redis", "rediss", "unix")
ENV_CA_FILE = "STREAMMOOD_REDIS_CA_FILE"
"""PEM file of the certificate authority that signed the server's certificate (``rediss://``)."""
ENV_CERT_FILE = "STREAMMOOD_REDIS_CERT_FILE"
"""PEM client certificate, for a server that authenticates clients (``tls-auth-clients``)."""
ENV_KEY_FILE = "STREAMMOOD_REDIS_KEY_FILE"
"""PEM private key of the client certificate."""
_TLS_ENV = {ENV_CA_FILE: "ssl_ca_certs", ENV_CERT_FILE: "ssl_certfile", ENV_KEY_FILE: "ssl_keyfile"}


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


def configure_tls(
    ca_file: str | None = None, cert_file: str | None = None, key_file: str | None = None
) -> None:
    """Use these TLS files for every ``rediss://`` connection of this process (what the
    ``--redis-ca-file``, ``--redis-cert-file`` and ``--redis-key-file`` options do: they set
    :data:`ENV_CA_FILE`, :data:`ENV_CERT_FILE`, :data:`ENV_KEY_FILE`); ``None`` leaves one
    as it is."""
    for env, value in (
        (ENV_CA_FILE, ca_file),
        (ENV_CERT_FILE, cert_file),
        (ENV_KEY_FILE, key_file),
    ):
        if value:
            os.environ[env] = value


def tls_options() -> dict[str, str]:
    """redis-py TLS arguments from :data:`ENV_CA_FILE`, :data:`ENV_CERT_FILE` and
    :data:`ENV_KEY_FILE` (only those set).

    Raises
    ------
    RedisUnavailableError
        A named file does not exist, or a client certificate is given without its key.
    """
    out = {}
    for env, arg in _TLS_ENV.items():
        path = os.environ.get(env)
        if not path:
            continue
        if not os.path.isfile(path):
            raise RedisUnavailableError(f"TLS file {path} (${env}) does not exist")
        out[arg] = path
    if ("ssl_certfile" in out) != ("ssl_keyfile" in out):
        raise RedisUnavailableError(
            f"a client certificate needs both ${ENV_CERT_FILE} and ${ENV_KEY_FILE} "
            "(--redis-cert-file and --redis-key-file)"
        )
    return out


def describe_client(client: redis.Redis) -> str:
    """Where a client points, without secrets (``redis://host:port/db`` or ``unix://path``; a
    cluster client: one of its nodes, ``redis://host:port/0 (cluster)``)."""
    if is_cluster(client):
        node = client.get_default_node()
        pool = node.redis_connection.connection_pool if node and node.redis_connection else None
        ssl = pool is not None and pool.connection_class.__name__.startswith("SSL")
        host, port = (node.host, node.port) if node else ("?", 0)
        return f"{'rediss' if ssl else 'redis'}://{host}:{port}/0 (cluster)"
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
    tls: dict[str, str] = {}
    if scheme == "rediss":
        given = {k.lower() for k, _ in parse_qsl(urlsplit(url).query)}
        tls = {k: v for k, v in tls_options().items() if k not in given}
    try:
        client = redis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 1),
            health_check_interval=30,
            **tls,
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
                f"cannot reach Redis at {shown}: {_scrub(str(exc), url)}{_tls_hint(exc, scheme)}"
            ) from None
    if scheme != "unix" and _cluster_enabled(client):
        client.close()
        try:
            client = RedisCluster.from_url(
                url, socket_timeout=timeout, socket_connect_timeout=timeout, **tls
            )
        except (redis.exceptions.RedisError, ValueError) as exc:
            raise RedisUnavailableError(
                f"cannot reach the Redis Cluster at {shown}: {_scrub(str(exc), url)}"
            ) from None
    return client


def _cluster_enabled(client: redis.Redis) -> bool:
    """Whether the server is a Redis Cluster node (``INFO cluster``); ``False`` if it cannot
    be asked (down, or the command refused)."""
    try:
        return bool(client.info("cluster").get("cluster_enabled"))
    except redis.exceptions.RedisError:
        return False


def is_cluster(client: object) -> bool:
    """Whether ``client`` is a Redis Cluster client (``connect`` makes one for a cluster
    node's URL)."""
    return isinstance(client, RedisCluster)


OUTAGES: tuple[type[Exception], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.TryAgainError,
    RedisClusterException,
)
"""Errors that mean Redis (or a shard of it) is away for now: retry, do not drop."""


class ImmediatePipeline:
    """The pipeline interface over a cluster client, which cannot pipeline scripts: each
    command runs at once, in order; :meth:`execute` returns the results (and raises the first
    command error, as a pipeline does). Only a lost connection stops it early."""

    _PASS = frozenset({"script_load", "script_exists"})

    def __init__(self, client: RedisCluster) -> None:
        self._client = client
        self.command_stack: list[str] = []
        self._results: list[object] = []

    def __getattr__(self, name: str):
        fn = getattr(self._client, name)
        if name in self._PASS:
            return fn

        def call(*args: object, **kwargs: object) -> ImmediatePipeline:
            try:
                result: object = fn(*args, **kwargs)
            except redis.exceptions.NoScriptError:
                raise  # redis-py's Script loads the script and calls again
            except OUTAGES:
                raise
            except redis.exceptions.ResponseError as exc:
                result = exc
            self.command_stack.append(name)
            self._results.append(result)
            return self

        return call

    def execute(self) -> list[object]:
        results, self._results, self.command_stack = self._results, [], []
        for r in results:
            if isinstance(r, Exception):
                raise r
        return results


def pipeline(client: redis.Redis) -> redis.client.Pipeline | ImmediatePipeline:
    """A non-transactional pipeline of ``client`` (a cluster client: :class:`ImmediatePipeline`)."""
    if is_cluster(client):
        return ImmediatePipeline(client)
    return client.pipeline(transaction=False)


def _tls_hint(exc: Exception, scheme: str) -> str:
    text = str(exc)
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return (
            f" (give the CA that signed the server's certificate with --redis-ca-file or "
            f"${ENV_CA_FILE})"
        )
    if scheme == "rediss" and ("certificate required" in text or "reset by peer" in text):
        return (
            " (the server may require a client certificate: --redis-cert-file and --redis-key-file)"
        )
    if scheme == "redis" and ("reset by peer" in text or "Connection closed" in text):
        return " (a TLS-only server? use rediss://)"
    return ""


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
