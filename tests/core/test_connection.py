"""Unit tests for telnyx_provider.connection: reading a Telnyx connection's fields into settings."""

from __future__ import annotations

import json

import pytest

from telnyx_provider.connection import TelnyxConnectionConfig, normalize_base_url
from telnyx_provider.errors import TelnyxValidationError
from telnyx_provider.retry import RetryPolicy

KEY = "KEYsecret0123456789abcdef"
TELNYX = "https://api.telnyx.com/v2"  # the documented default base URL


def config(extra=None, *, host=None, login="acct-1", password=KEY):
    return TelnyxConnectionConfig.from_fields(
        "telnyx_default", host=host, login=login, password=password, extra=extra
    )


@pytest.mark.parametrize(
    ("host", "base_url"),
    [
        (None, TELNYX),
        ("", TELNYX),
        ("   ", TELNYX),
        ("api.telnyx.com", TELNYX),
        ("  api.telnyx.com  ", TELNYX),
        ("https://api.telnyx.com/v2", TELNYX),
        ("https://api.telnyx.com/v2/", TELNYX),
        ("https://api.telnyx.com/v2///", TELNYX),
        ("https://api.telnyx.com", TELNYX),  # no path: the API version is added
        ("http://127.0.0.1:8765/v2", "http://127.0.0.1:8765/v2"),  # a local sandbox, kept as is
        ("https://example.com/", "https://example.com/v2"),
        ("https://proxy.example.com/telnyx/v2/", "https://proxy.example.com/telnyx/v2"),
        ("localhost:8765", "https://localhost:8765/v2"),
    ],
)
def test_normalize_base_url(host, base_url):
    assert normalize_base_url(host) == base_url


@pytest.mark.parametrize(
    "host", ["ftp://x", "http://", "https://", "file:///etc/passwd", "https://x.com:port"]
)
def test_normalize_base_url_refuses_non_http_urls(host):
    with pytest.raises(TelnyxValidationError) as caught:
        normalize_base_url(host)
    assert caught.value.argument == "host"
    assert TELNYX in str(caught.value)  # shows an example of what works


@pytest.mark.parametrize("password", [None, "", "   ", "\n"])
def test_missing_api_key_is_refused_without_echoing_secrets(password):
    other_secrets = ("hunter2", "s3cr3t-token")
    with pytest.raises(TelnyxValidationError) as caught:
        TelnyxConnectionConfig.from_fields(
            "telnyx_prod",
            host="https://user:hunter2@api.telnyx.com/v2",
            login="acct-1",
            password=password,
            extra=json.dumps({"token": "s3cr3t-token"}),
        )
    message = str(caught.value)
    assert "telnyx_prod" in message
    assert "password" in message
    assert "API key" in message
    for secret in other_secrets:
        assert secret not in message


def test_fields_become_settings():
    result = config(host="http://127.0.0.1:8765/v2", login=" acct-1 ", password=f"  {KEY}\n")
    assert result.api_key == KEY  # whitespace from a pasted key is dropped
    assert result.account_sid == "acct-1"
    assert result.base_url == "http://127.0.0.1:8765/v2"
    assert result.conn_id == "telnyx_default"
    assert result.url("/texml/Accounts/a/Recordings.json") == (
        "http://127.0.0.1:8765/v2/texml/Accounts/a/Recordings.json"
    )


@pytest.mark.parametrize("login", [None, "", "  "])
def test_no_login_means_no_default_account(login):
    assert config(login=login).account_sid is None


EXTRAS = {
    "timeout": 12.5,
    "connect_timeout": 3,
    "max_retries": 2,
    "retry_max_wait": 4,
    "retry_budget": 20,
    "pool_size": 5,
    "ca_bundle": "/etc/ssl/corp.pem",
    "shared_polls": False,
}
SETTINGS = {
    "read_timeout": 12.5,
    "connect_timeout": 3.0,
    "max_retries": 2,
    "retry_max_wait": 4.0,
    "retry_budget": 20.0,
    "pool_size": 5,
    "ca_bundle": "/etc/ssl/corp.pem",
    "shared_polls": False,
}


@pytest.mark.parametrize(
    "extra",
    [
        EXTRAS,
        json.dumps(EXTRAS),
        {f"extra__telnyx__{name}": value for name, value in EXTRAS.items()},  # older connection forms
        json.dumps({f"extra__telnyx__{name}": value for name, value in EXTRAS.items()}),
    ],
    ids=["dict", "json", "prefixed-dict", "prefixed-json"],
)
def test_extras_are_read(extra):
    result = config(extra)
    assert {name: getattr(result, name) for name in SETTINGS} == SETTINGS
    assert result.verify == "/etc/ssl/corp.pem"


@pytest.mark.parametrize("extra", [None, "", "{}", {}, {"timeout": None, "ca_bundle": ""}])
def test_no_extras_give_the_defaults(extra):
    result = config(extra)
    assert result == config()
    assert result.verify is True  # TLS verification is never off
    assert result.read_timeout > 0
    assert result.connect_timeout > 0


@pytest.mark.parametrize(
    ("given", "read"), [({}, True), ({"shared_polls": "false"}, False), ({"shared_polls": "True"}, True)]
)
def test_shared_polls_are_on_unless_the_extra_says_false(given, read):
    assert config(given).shared_polls is read


@pytest.mark.parametrize(("given", "read"), [({"max_retries": "3"}, 3), ({"max_retries": 0}, 0)])
def test_max_retries_accepts_whole_numbers_from_zero(given, read):
    assert config(given).max_retries == read


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"timeout": 0}, "timeout"),
        ({"timeout": -1}, "timeout"),
        ({"timeout": "abc"}, "timeout"),
        ({"extra__telnyx__timeout": 0}, "timeout"),
        ({"connect_timeout": 0}, "connect_timeout"),
        ({"retry_max_wait": -5}, "retry_max_wait"),
        ({"retry_budget": False}, "retry_budget"),
        ({"max_retries": -1}, "max_retries"),
        ({"max_retries": "many"}, "max_retries"),
        ({"max_retries": 2.5}, "max_retries"),
        ({"max_retries": True}, "max_retries"),
        ({"pool_size": 0}, "pool_size"),
        ({"shared_polls": "no"}, "shared_polls"),
        ({"shared_polls": 1}, "shared_polls"),
        ("not json", "extra"),
        ('{"timeout": 30', "extra"),
        ("[1, 2]", "extra"),
        ('"text"', "extra"),
    ],
)
def test_bad_extras_are_refused(extra, named):
    with pytest.raises(TelnyxValidationError) as caught:
        config(extra)
    assert named in str(caught.value)
    assert KEY not in str(caught.value)


def test_unparsable_extra_is_not_echoed():
    # The extra may hold other secrets: a broken one is described, not quoted.
    with pytest.raises(TelnyxValidationError) as caught:
        config('{"webhook_secret": "s3cr3t-token", ')
    assert "s3cr3t-token" not in str(caught.value)
    assert "JSON" in str(caught.value)


@pytest.mark.parametrize("extra", [None, EXTRAS])
def test_repr_never_shows_the_api_key(extra):
    result = config(extra)
    assert KEY not in repr(result)
    assert KEY not in str(result)
    assert "telnyx_default" in repr(result)


@pytest.mark.parametrize(
    ("login", "argument", "chosen"),
    [("acct-1", None, "acct-1"), ("acct-1", "acct-2", "acct-2"), (None, "acct-2", "acct-2")],
)
def test_resolve_account_sid_prefers_the_argument(login, argument, chosen):
    assert config(login=login).resolve_account_sid(argument) == chosen


def test_resolve_account_sid_without_any_is_refused():
    with pytest.raises(TelnyxValidationError) as caught:
        config(login=None).resolve_account_sid(None)
    assert caught.value.argument == "account_sid"
    assert "telnyx_default" in str(caught.value)  # says where to set it


def test_retry_policy_reflects_the_extras():
    policy = config({"max_retries": 2, "retry_max_wait": 4, "retry_budget": 20}).retry_policy()
    assert (policy.max_retries, policy.max_wait, policy.budget) == (2, 4.0, 20.0)


def test_retry_policy_without_extras_is_the_default_policy():
    # The connection's documented defaults and RetryPolicy's own must not drift apart.
    assert config().retry_policy() == RetryPolicy()


# -- schema and port, as Airflow's HTTP hook reads them ------------------------------------------------


@pytest.mark.parametrize(
    ("host", "schema", "port", "base_url"),
    [
        ("127.0.0.1", "http", 8765, "http://127.0.0.1:8765/v2"),  # the example
        ("127.0.0.1", "http", "8765", "http://127.0.0.1:8765/v2"),  # a port typed as text
        ("127.0.0.1", "HTTP ", None, "http://127.0.0.1/v2"),
        ("api.telnyx.com", "https", None, TELNYX),
        ("api.telnyx.com", None, 443, "https://api.telnyx.com:443/v2"),  # no schema: https
        ("localhost/proxy/v2", "http", 8080, "http://localhost:8080/proxy/v2"),  # a bare host with a path
        ("::1", "http", 8765, "http://[::1]:8765/v2"),  # a bare IPv6 address
        ("localhost:8765", "http", 8765, "http://localhost:8765/v2"),  # the same port twice agrees
        ("localhost:8765", "", "", "https://localhost:8765/v2"),  # empty fields from the UI
        ("http://127.0.0.1:8765/v2", None, None, "http://127.0.0.1:8765/v2"),  # a full URL, as today
        ("http://127.0.0.1:8765/v2", "http", 8765, "http://127.0.0.1:8765/v2"),  # fields that agree
        ("https://proxy.example.com/telnyx", None, 8443, "https://proxy.example.com:8443/telnyx"),
        (None, None, None, TELNYX),
        ("", "https", None, TELNYX),
    ],
)
def test_schema_and_port_complete_the_host(host, schema, port, base_url):
    assert normalize_base_url(host, schema, port) == base_url


def test_connection_fields_schema_and_port_reach_the_config():
    result = TelnyxConnectionConfig.from_fields(
        "c", host="127.0.0.1", login="a", password=KEY, extra=None, schema="http", port=8765
    )
    assert result.base_url == "http://127.0.0.1:8765/v2"
    assert result.url("/x") == "http://127.0.0.1:8765/v2/x"


def test_config_from_connection_reads_schema_and_port():
    from airflow.sdk import Connection

    from telnyx_provider.connection import config_from_connection

    connection = Connection(
        conn_id="telnyx_local",
        conn_type="telnyx",
        host="127.0.0.1",
        schema="http",
        port=8765,
        login="acct-1",
        password=KEY,
    )
    assert config_from_connection(connection).base_url == "http://127.0.0.1:8765/v2"


def test_a_connection_uri_gives_schema_and_port():
    # In a connection URI the path is the schema: telnyx://ACCOUNT:KEY@host:port/http
    from airflow.sdk import Connection

    from telnyx_provider.connection import config_from_connection

    connection = Connection.from_uri(f"telnyx://acct-1:{KEY}@127.0.0.1:8765/http", conn_id="telnyx_uri")
    assert config_from_connection(connection).base_url == "http://127.0.0.1:8765/v2"


@pytest.mark.parametrize(
    ("host", "schema", "port", "argument", "said"),
    [
        ("127.0.0.1", "ftp", None, "schema", "'http', 'https'"),
        ("127.0.0.1", "v2", None, "schema", "the schema is the path"),  # telnyx://...@host/v2 by mistake
        ("127.0.0.1", 5, None, "schema", "'http', 'https'"),
        ("127.0.0.1", "http", 0, "port", "1 to 65535"),
        ("127.0.0.1", "http", 65536, "port", "1 to 65535"),
        ("127.0.0.1", "http", -1, "port", "1 to 65535"),
        ("127.0.0.1", "http", "http", "port", "1 to 65535"),
        ("127.0.0.1", "http", True, "port", "1 to 65535"),
        ("127.0.0.1", "http", 80.5, "port", "1 to 65535"),
        ("localhost:8765", None, 9000, "port", "already names (8765)"),  # two ports: which one?
        ("http://localhost:8765/v2", None, 9000, "port", "already names (8765)"),
        ("http://localhost/v2", "https", None, "schema", "already names ('http')"),  # two schemes
        ("https://api.telnyx.com/v2", "http", None, "schema", "already names ('https')"),
        (None, None, 8765, "host", "port 8765"),  # a port without its host
        ("", "http", None, "schema", TELNYX),  # no host, but a downgrade to http
        ("localhost:0", None, None, "host", "1 to 65535"),
        ("localhost:70000", None, None, "host", TELNYX),
    ],
)
def test_bad_or_conflicting_schema_and_port_are_refused(host, schema, port, argument, said):
    with pytest.raises(TelnyxValidationError) as caught:
        normalize_base_url(host, schema, port)
    assert caught.value.argument == argument
    assert said in str(caught.value)


def test_a_bad_port_is_refused_before_any_request(requests_mock, monkeypatch):
    from telnyx_provider.hooks.recording import RecordingHook

    monkeypatch.setenv(
        "AIRFLOW_CONN_TELNYX_DEFAULT",
        json.dumps({"conn_type": "telnyx", "host": "127.0.0.1", "port": 70000, "password": KEY}),
    )
    with pytest.raises(TelnyxValidationError) as caught:
        RecordingHook().get_recording("r1")
    assert caught.value.argument == "port"
    assert requests_mock.call_count == 0


def test_a_conflict_message_never_shows_credentials():
    with pytest.raises(TelnyxValidationError) as caught:
        normalize_base_url("http://localhost:8765/v2", "https", None)
    assert "localhost:8765" in str(caught.value)  # says which host disagrees


def test_the_hook_sends_to_host_schema_and_port(requests_mock, monkeypatch):
    from telnyx_provider.hooks.recording import RecordingHook

    conn = {"conn_type": "telnyx", "host": "127.0.0.1", "schema": "http", "port": 8765, "password": KEY}
    monkeypatch.setenv("AIRFLOW_CONN_TELNYX_DEFAULT", json.dumps({**conn, "login": "acct-1"}))
    requests_mock.get(
        "http://127.0.0.1:8765/v2/texml/Accounts/acct-1/Recordings/r1.json",
        json={"sid": "r1", "status": "in-progress"},
    )
    assert RecordingHook().get_recording("r1")["sid"] == "r1"
    assert requests_mock.call_count == 1


def test_the_connection_form_shows_schema_and_port():
    from telnyx_provider.get_provider_info import UI_FIELD_BEHAVIOUR, get_provider_info

    [connection_type] = get_provider_info()["connection-types"]
    for behaviour in (UI_FIELD_BEHAVIOUR, connection_type["ui-field-behaviour"]):
        hidden = behaviour.get("hidden_fields", behaviour.get("hidden-fields"))
        assert "schema" not in hidden
        assert "port" not in hidden
        assert {"schema", "port"} <= set(behaviour["relabeling"]) & set(behaviour["placeholders"])
