"""Reading a Telnyx Airflow Connection into settings the hook and the async client share.

Pure: it takes the Connection's fields, not the Connection lookup, so the sync hook (``get_connection``)
and the trigger (``aget_connection``) read it the same way. The one file it touches, a CA bundle, is read
only when a client is built (:meth:`TelnyxConnectionConfig.ssl_context`).

Connection fields: password = API key, login = default account SID, host = base URL (or a bare host,
with ``schema`` = its scheme and ``port`` = its port, as Airflow's HTTP hook reads them). Extra (JSON):
``timeout`` (read, seconds), ``connect_timeout``, ``max_retries`` (attempts after the first),
``retry_max_wait`` (cap of one backoff wait), ``retry_budget`` (seconds of retrying per request),
``ca_bundle`` (path of a CA bundle for TLS verification), ``pool_size`` (async connection pool size),
``adoption_wait`` (seconds a start whose reply was lost looks for its recording), ``receiver_url`` (the
status-callback receiver's ``/telnyx`` base as the workers reach it, for exact starts),
``shared_polls`` (deferred waits of one triggerer share their polls; default true).
"""

from __future__ import annotations

import json
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from telnyx_provider._compat import mask_secret
from telnyx_provider.errors import TelnyxValidationError
from telnyx_provider.params import require_http_url, require_positive_number
from telnyx_provider.retry import RetryPolicy

if TYPE_CHECKING:
    from airflow.sdk import Connection

DEFAULT_BASE_URL = "https://api.telnyx.com/v2"
_DEFAULT_PATH = "/v2"


def redact_url(url: str) -> str:
    """``url`` with any ``user:password@`` replaced by ``***@``, fit for a message."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    authority, slash, tail = rest.partition("/")
    if "@" in authority:
        authority = "***@" + authority.rpartition("@")[2]
    return f"{scheme}{sep}{authority}{slash}{tail}"


def normalize_base_url(host: str | None, schema: str | None = None, port: object = None) -> str:
    """Turn the connection's host, schema and port into the API base URL.

    As Airflow's HTTP hook reads them: ``schema`` is the scheme of a bare host (``https`` when not given:
    Telnyx is served over TLS) and ``port`` its port, so host ``127.0.0.1``, schema ``http``, port 8765
    give ``http://127.0.0.1:8765/v2``. Empty host: ``https://api.telnyx.com/v2`` (a port without a host,
    or schema ``http``, is refused). A URL with a scheme is used as given, with ``/v2`` added only when it
    has no path. No field is silently dropped: a ``port`` is added to a host that names none, and a scheme
    or port that the host names differently is refused (which one is meant cannot be guessed). Credentials
    in the URL (``user:password@``) are refused, and never repeated in the message: the API key belongs in
    the connection's password.

    :param host: the connection's host: a URL, a bare host name, or empty.
    :param schema: the connection's schema field: ``http`` or ``https`` (in a connection URI, its path).
    :param port: the connection's port field: a whole number from 1 to 65535.
    :raises TelnyxValidationError: any field that cannot make an http(s) base URL.
    """
    scheme = _scheme_field(schema)
    port_number = _port_field(port)
    host = (host or "").strip()
    if not host:
        if port_number is not None:
            raise TelnyxValidationError("host", "", f"the host that port {port_number} belongs to")
        if scheme not in (None, "https"):
            raise TelnyxValidationError(
                "schema", schema, f"'https' or empty without a host (the default is {DEFAULT_BASE_URL})"
            )
        return DEFAULT_BASE_URL
    has_scheme = "://" in host
    if not has_scheme:
        if host.count(":") > 1 and not host.startswith("["):
            host = f"[{host}]"  # a bare IPv6 address
        host = f"{scheme or 'https'}://{host}"
    expected = "an http:// or https:// base URL such as " + DEFAULT_BASE_URL
    try:
        parts = urlsplit(host)
        hostname = parts.hostname
        host_port = parts.port
    except ValueError:
        raise TelnyxValidationError("host", redact_url(host), expected) from None
    if "@" in parts.netloc:
        raise TelnyxValidationError(
            "host",
            redact_url(host),
            "a base URL without credentials (user:password@); put the API key in the connection's password",
        )
    if parts.scheme not in ("http", "https") or not hostname or any(ch.isspace() for ch in host):
        raise TelnyxValidationError("host", redact_url(host), expected)
    if host_port == 0:
        raise TelnyxValidationError("host", redact_url(host), "a port from 1 to 65535")
    if has_scheme and scheme is not None and scheme != parts.scheme:
        raise TelnyxValidationError(
            "schema",
            schema,
            f"empty, or the scheme the host already names ({parts.scheme!r}): the host {redact_url(host)} "
            "and the schema field disagree",
        )
    netloc = parts.netloc
    if port_number is not None:
        if host_port is None:
            netloc = f"{netloc}:{port_number}"
        elif host_port != port_number:
            raise TelnyxValidationError(
                "port",
                port,
                f"empty, or the port the host already names ({host_port}): the host {redact_url(host)} "
                "and the port field disagree",
            )
    path = parts.path.rstrip("/") or _DEFAULT_PATH
    return f"{parts.scheme}://{netloc}{path}"


def _scheme_field(schema: str | None) -> str | None:
    """The connection's schema field as a scheme (``http``/``https``), ``None`` when empty."""
    if schema is None or (isinstance(schema, str) and not schema.strip()):
        return None
    if isinstance(schema, str) and schema.strip().lower() in ("http", "https"):
        return schema.strip().lower()
    raise TelnyxValidationError(
        "schema",
        schema,
        "'http', 'https' or empty: the scheme of a bare host (in a connection URI the schema is the path: "
        "telnyx://ACCOUNT:KEY@host:port/https)",
    )


def _port_field(port: object) -> int | None:
    """The connection's port field as a number from 1 to 65535, ``None`` when empty."""
    if port is None or (isinstance(port, str) and not port.strip()):
        return None
    number: int | None = None
    if isinstance(port, int) and not isinstance(port, bool):
        number = port
    elif isinstance(port, str) and port.strip().isdigit():
        number = int(port.strip())
    if number is None or not 1 <= number <= 65535:
        raise TelnyxValidationError("port", port, "a whole number from 1 to 65535, or empty")
    return number


@dataclass(frozen=True)
class TelnyxConnectionConfig:
    """Everything the provider needs from a Telnyx connection. The API key stays out of ``repr``."""

    conn_id: str
    base_url: str
    api_key: str = field(repr=False)
    account_sid: str | None = None
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    max_retries: int = 8
    retry_max_wait: float = 30.0
    retry_budget: float = 60.0
    ca_bundle: str | None = None
    pool_size: int = 10
    adoption_wait: float = 5.0
    receiver_url: str | None = None
    shared_polls: bool = True

    @classmethod
    def from_fields(
        cls,
        conn_id: str,
        *,
        host: str | None,
        login: str | None,
        password: str | None,
        extra: str | Mapping[str, Any] | None,
        schema: str | None = None,
        port: int | str | None = None,
    ) -> TelnyxConnectionConfig:
        """Build the settings from a Connection's fields, refusing what cannot work.

        :param conn_id: the connection's id, named in every message.
        :param host: base URL or bare host (see :func:`normalize_base_url`).
        :param login: the default account SID.
        :param password: the API key.
        :param extra: the extra, as JSON text or a mapping.
        :param schema: the scheme of a bare host (``http``/``https``).
        :param port: the port of a bare host, or of a URL host without one.
        """
        if not password or not password.strip():
            raise TelnyxValidationError(
                f"connection {conn_id!r} password",
                "<empty>",
                "the Telnyx API key (it is sent as a bearer token)",
            )
        api_key = password.strip()
        if not all(" " < ch < "\x7f" for ch in api_key):
            # Sent as a header: requests and httpx would refuse it with an error quoting the whole key.
            raise TelnyxValidationError(
                f"connection {conn_id!r} password",
                "<hidden>",
                "an API key of printable ASCII characters without spaces",
            )
        try:
            return cls._build(
                conn_id, host=host, login=login, api_key=api_key, extra=extra, schema=schema, port=port
            )
        except TelnyxValidationError as error:
            if api_key not in str(error):
                raise
            hidden = TelnyxValidationError(
                error.argument, "<hidden: it contains the API key>", error.expected
            )
        raise hidden from None

    @classmethod
    def _build(
        cls,
        conn_id: str,
        *,
        host: str | None,
        login: str | None,
        api_key: str,
        extra: str | Mapping[str, Any] | None,
        schema: str | None,
        port: int | str | None,
    ) -> TelnyxConnectionConfig:
        base_url = normalize_base_url(host, schema, port)
        extras = _parse_extra(conn_id, extra)
        options: dict[str, Any] = {}
        for name in ("connect_timeout", "retry_max_wait", "retry_budget", "adoption_wait"):
            if extras.get(name) is not None:
                options[name] = require_positive_number(f"connection extra {name}", extras[name])
        if extras.get("timeout") is not None:
            options["read_timeout"] = require_positive_number("connection extra timeout", extras["timeout"])
        for name in ("max_retries", "pool_size"):
            if extras.get(name) is not None:
                options[name] = _non_negative_int(
                    f"connection extra {name}", extras[name], minimum=0 if name == "max_retries" else 1
                )
        if extras.get("shared_polls") is not None:
            options["shared_polls"] = _flag("connection extra shared_polls", extras["shared_polls"])
        if extras.get("receiver_url"):
            options["receiver_url"] = require_http_url(
                "connection extra receiver_url", str(extras["receiver_url"]).strip()
            ).rstrip("/")
        if extras.get("ca_bundle"):
            options["ca_bundle"] = os.path.expanduser(str(extras["ca_bundle"]).strip())
        return cls(
            conn_id=conn_id,
            base_url=base_url,
            api_key=api_key,
            account_sid=(login or "").strip() or None,
            **options,
        )

    def retry_policy(self) -> RetryPolicy:
        """The retry policy this connection asks for."""
        return RetryPolicy(
            max_retries=self.max_retries, max_wait=self.retry_max_wait, budget=self.retry_budget
        )

    @property
    def verify(self) -> str | bool:
        """TLS verification: always on; a CA bundle path when the connection names one."""
        return self.ca_bundle or True

    def ssl_context(self) -> ssl.SSLContext:
        """A verifying TLS context trusting the connection's CA bundle (or the system's store).

        :raises TelnyxValidationError: the bundle is missing or holds no certificates, with the path and
            what is expected, rather than an ``OSError`` at the first request.
        """
        if not self.ca_bundle:
            return ssl.create_default_context()
        argument = f"connection {self.conn_id!r} extra ca_bundle"
        expected = "the path of a readable CA bundle (a PEM file of certificates)"
        path = self.ca_bundle
        if not os.path.isfile(path):
            raise TelnyxValidationError(argument, self.ca_bundle, expected + "; there is no such file")
        try:
            return ssl.create_default_context(cafile=path)
        except (OSError, ssl.SSLError, ValueError) as error:
            raise TelnyxValidationError(
                argument, self.ca_bundle, f"{expected}; it does not load: {error}"
            ) from None

    def url(self, path: str) -> str:
        """The absolute URL of an API path."""
        return self.base_url + path

    def resolve_account_sid(self, account_sid: str | None) -> str:
        """The account SID to use: the argument if given, else the connection's login."""
        chosen = account_sid if account_sid is not None else self.account_sid
        if chosen is None:
            raise TelnyxValidationError(
                "account_sid",
                None,
                f"an account SID, given as an argument or as the login of connection {self.conn_id!r}",
            )
        return chosen


def _parse_extra(conn_id: str, extra: str | Mapping[str, Any] | None) -> Mapping[str, Any]:
    if extra is None or extra == "":
        return {}
    if isinstance(extra, Mapping):
        return {name.removeprefix("extra__telnyx__"): value for name, value in extra.items()}
    try:
        parsed = json.loads(extra)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        raise TelnyxValidationError(f"connection {conn_id!r} extra", "<not a JSON object>", "a JSON object")
    # Older connection forms stored fields as extra__telnyx__<name>.
    return {name.removeprefix("extra__telnyx__"): value for name, value in parsed.items()}


def _flag(argument: str, value: object) -> bool:
    """A yes/no extra: a JSON boolean, or the strings ``true``/``false`` (as forms and URIs give them)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise TelnyxValidationError(argument, value, "true or false")


def _non_negative_int(argument: str, value: object, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TelnyxValidationError(argument, value, f"a whole number >= {minimum}")
    try:
        number = int(value)
    except ValueError:
        raise TelnyxValidationError(argument, value, f"a whole number >= {minimum}") from None
    if number < minimum:
        raise TelnyxValidationError(argument, value, f"a whole number >= {minimum}")
    return number


def config_from_connection(connection: Connection) -> TelnyxConnectionConfig:
    """Read an Airflow Connection (sync or async lookup) and register its API key with the secret masker."""
    if connection.password:
        mask_secret(connection.password)
        if connection.password.strip() != connection.password:
            mask_secret(connection.password.strip())  # what is sent, and could show up in a log
    return TelnyxConnectionConfig.from_fields(
        connection.conn_id,
        host=connection.host,
        login=connection.login,
        password=connection.password,
        extra=connection.extra,
        schema=connection.schema,
        port=connection.port,
    )
