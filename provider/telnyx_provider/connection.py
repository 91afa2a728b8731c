"""Reading a Telnyx Airflow Connection into settings the hook and the async client share.

Pure: it takes the Connection's fields, not the Connection lookup, so the sync hook (``get_connection``)
and the trigger (``aget_connection``) read it the same way. The one file it touches, a CA bundle, is read
only when a client is built (:meth:`TelnyxConnectionConfig.ssl_context`).

Connection fields: password = API key, login = default account SID, host = base URL. Extra (JSON):
``timeout`` (read, seconds), ``connect_timeout``, ``max_retries`` (attempts after the first),
``retry_max_wait`` (cap of one backoff wait), ``retry_budget`` (seconds of retrying per request),
``ca_bundle`` (path of a CA bundle for TLS verification), ``pool_size`` (async connection pool size).
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
from telnyx_provider.params import require_positive_number
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


def normalize_base_url(host: str | None) -> str:
    """Turn the connection's host into the API base URL.

    Empty: ``https://api.telnyx.com/v2``. A bare host name (``api.telnyx.com``) means ``https://<host>/v2``.
    A URL with a scheme is used as given, with ``/v2`` added only when it has no path. Credentials in the
    URL (``user:password@``) are refused, and never repeated in the message: the API key belongs in the
    connection's password.
    """
    if host is None or not host.strip():
        return DEFAULT_BASE_URL
    host = host.strip()
    if "://" not in host:
        host = f"https://{host}"
    expected = "an http:// or https:// base URL such as " + DEFAULT_BASE_URL
    try:
        parts = urlsplit(host)
        hostname = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a bad port
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
    path = parts.path.rstrip("/") or _DEFAULT_PATH
    return f"{parts.scheme}://{parts.netloc}{path}"


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

    @classmethod
    def from_fields(
        cls,
        conn_id: str,
        *,
        host: str | None,
        login: str | None,
        password: str | None,
        extra: str | Mapping[str, Any] | None,
    ) -> TelnyxConnectionConfig:
        """Build the settings from a Connection's fields, refusing what cannot work."""
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
            return cls._build(conn_id, host=host, login=login, api_key=api_key, extra=extra)
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
    ) -> TelnyxConnectionConfig:
        extras = _parse_extra(conn_id, extra)
        options: dict[str, Any] = {}
        for name in ("connect_timeout", "retry_max_wait", "retry_budget"):
            if extras.get(name) is not None:
                options[name] = require_positive_number(f"connection extra {name}", extras[name])
        if extras.get("timeout") is not None:
            options["read_timeout"] = require_positive_number("connection extra timeout", extras["timeout"])
        for name in ("max_retries", "pool_size"):
            if extras.get(name) is not None:
                options[name] = _non_negative_int(
                    f"connection extra {name}", extras[name], minimum=0 if name == "max_retries" else 1
                )
        if extras.get("ca_bundle"):
            options["ca_bundle"] = os.path.expanduser(str(extras["ca_bundle"]).strip())
        return cls(
            conn_id=conn_id,
            base_url=normalize_base_url(host),
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
    )
