"""Store URLs shown, stored and compared without their secrets.

A password may sit in a URL's userinfo (``redis://:PW@host``, ``postgresql://user:PW@host``) or in its query string
(``?password=PW``, libpq's ``sslpassword``). :func:`mask_url` hides both wherever a URL is shown, :func:`split_password`
takes the password out before a URL is stored or put on a command line, :func:`check_url` turns a URL the clients
would misread into one line without the secret, and :func:`endpoint_key` tells whether two URLs name one server.
"""

from __future__ import annotations

from collections.abc import Collection
from urllib.parse import SplitResult, quote, unquote, urlsplit, urlunsplit

from targets.errors import FanoutError

MASK = "***"
#: Query parameters that carry a secret: redis-py's and asyncpg's ``password``, libpq's ``sslpassword``.
SECRET_PARAMS = frozenset({"password", "sslpassword", "pass", "passwd", "pwd", "auth"})
LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1", "ip6-localhost"})
SCHEMES = {"redis": ("redis", "rediss", "unix"), "postgres": ("postgresql", "postgres")}
DEFAULT_PORTS = {"redis": 6379, "rediss": 6379, "postgresql": 5432, "postgres": 5432}


class InvalidURL(FanoutError, ValueError):
    """A store URL that cannot be used as written (the message never holds its password)."""


def _authority_end(rest: str) -> int:
    """Where the host part of ``rest`` (what follows ``//``) ends.

    A raw ``/``, ``?`` or ``#`` inside a password would end it early, so an ``@`` further on means the userinfo
    reaches up to the last ``@``: masking too much is better than showing part of a password.
    """
    at = rest.rfind("@")
    stops = [i for i in (rest.find(c, at + 1) for c in "/?#") if i >= 0]
    return min(stops) if stops else len(rest)


def _mask_query(query: str) -> str:
    """``query`` with the value of every secret parameter replaced; a raw ``&`` in a secret hides the rest too."""
    pieces, hiding = [], False
    for piece in query.split("&"):
        name, eq, _ = piece.partition("=")
        if eq and name.lower() in SECRET_PARAMS:
            pieces.append(f"{name}={MASK}")
            hiding = True
        elif hiding and not eq:
            continue  # the tail of a secret that held a raw '&'
        else:
            pieces.append(piece)
            hiding = False
    return "&".join(pieces)


def mask_url(url: str) -> str:
    """``url`` with every password replaced by ``***``: in the userinfo (even one holding raw ``/?#@:`` characters)
    and in secret query parameters (``password=``, ``sslpassword=``). Safe on malformed URLs and on non-URLs."""
    scheme, sep, rest = url.partition("://")
    if not sep:  # "unix:/path?password=..." or a libpq "key=value" string
        head, q, query = url.partition("?")
        if q:
            return f"{head}?{_mask_query(query)}"
        return " ".join(_mask_query(word) for word in url.split(" "))
    end = _authority_end(rest)
    authority, tail = rest[:end], rest[end:]
    userinfo, at, hostport = authority.rpartition("@")
    if at:
        user, colon, _ = userinfo.partition(":")
        authority = f"{user}:{MASK}@{hostport}" if colon else authority
    path, q, query = tail.partition("?")
    return f"{scheme}://{authority}{path}{q}{_mask_query(query) if q else ''}"


def mask_args(args: list[str], hidden: Collection[str] = ()) -> list[str]:
    """Command-line arguments with every URL's password masked (``--redis-url URL`` and ``--redis-url=URL``), and
    the values of the ``hidden`` options (a command that may hold a secret) replaced by ``***``."""
    masked: list[str] = []
    for arg in args:
        option, eq, value = arg.partition("=")
        if masked and masked[-1] in hidden:
            masked.append("***")
        elif eq and option in hidden:
            masked.append(f"{option}=***")
        elif eq and option.startswith("-"):
            masked.append(f"{option}={mask_url(value)}")
        else:
            masked.append(mask_url(arg) if "://" in arg or "password=" in arg.lower() else arg)
    return masked


def split_password(url: str) -> tuple[str, str | None]:
    """``url`` without its password (userinfo and secret query parameters), and the password (decoded) or None.

    For what is stored or put on a command line: the password then travels separately (an environment variable).
    """
    parts = urlsplit(url)
    password = unquote(parts.password) if parts.password is not None else None
    netloc = parts.netloc
    if parts.password is not None:
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.partition(":")[0]
        netloc = f"{user}@{hostport}" if user else hostport
    kept = []
    for piece in parts.query.split("&") if parts.query else []:
        name, _, value = piece.partition("=")
        if name.lower() in SECRET_PARAMS:
            password = password if password is not None else unquote(value)
        else:
            kept.append(piece)
    return urlunsplit(parts._replace(netloc=netloc, query="&".join(kept))), password


def scrub(text: str, url: str) -> str:
    """``text``, an error message about ``url``, with the URL's password (raw or percent-encoded) as ``***``."""
    try:
        password = split_password(url)[1]
    except ValueError:
        return mask_url(text)
    if not password:
        return text
    for secret in (password, quote(password, safe="")):
        text = text.replace(secret, MASK)
    return text


def check_url(url: str, store: str, variable: str) -> SplitResult:
    """The parsed ``url`` if the store's clients will read it as written; else :class:`InvalidURL`, one line that
    names ``variable`` and the fix and shows the URL masked. ``store`` is "redis" or "postgres"."""
    shown = mask_url(url)
    name = "Redis" if store == "redis" else "PostgreSQL"

    def invalid(problem: str) -> InvalidURL:
        return InvalidURL(f"the {name} URL {shown} ({variable}) {problem}")

    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme not in SCHEMES[store]:
        example = "redis://[:PASSWORD@]HOST:PORT/DB" if store == "redis" else "postgresql://USER[:PASSWORD]@HOST/DB"
        found = f"starts with {scheme!r}" if scheme else "has no scheme"
        raise invalid(f"{found}: write it as {example}")
    try:
        parts = urlsplit(url)
    except ValueError:  # an unclosed [ of an IPv6 address, say
        raise invalid("has a malformed host (an IPv6 address goes in brackets: [::1])") from None
    after_host = url.partition("://")[2][len(parts.netloc) :]
    special = "write a password's / ? # @ characters percent-encoded (%2F %3F %23 %40)"
    if "@" in after_host:
        raise invalid(f"has an '@' after its host, so part of it would be taken for the host: {special}")
    try:
        port = parts.port
    except ValueError:
        raise invalid(f"has no valid port after its host: {special}") from None
    if scheme != "unix" and not parts.hostname:
        raise invalid(f"names no host: {special}")
    if port == 0:
        raise invalid("has port 0: give the server's port")
    if store == "redis" and scheme != "unix" and parts.path.strip("/") and not parts.path.strip("/").isdigit():
        raise invalid(f"names database {parts.path.strip('/')!r}: a Redis database is a number (redis://HOST:PORT/0)")
    return parts


def endpoint_key(url: str) -> tuple[str, int] | None:
    """The server a TCP URL names, normalised so that URLs naming one server compare equal: loopback names and
    addresses are one host, the default port counts as given, user, password, database and query do not count.
    None for URLs that name no TCP server (unix sockets, unparsable ones)."""
    try:
        parts = urlsplit(url)
        port = parts.port or DEFAULT_PORTS.get(parts.scheme.lower())
    except ValueError:
        return None
    host = (parts.hostname or "").lower()
    if not host or port is None:
        return None
    return ("loopback" if host in LOOPBACK else host), port


def same_server(a: str, b: str) -> bool:
    """Whether two URLs name the same server (see :func:`endpoint_key`); unparsable ones only match themselves."""
    key_a, key_b = endpoint_key(a), endpoint_key(b)
    return key_a == key_b if key_a is not None and key_b is not None else a == b
