"""The sandbox's ``strict_schema`` and ``date_format`` options: constructor, command line, reply shapes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import requests

from telnyx_provider.sandbox import Sandbox, cli
from telnyx_provider.sandbox.schema import CREATE_FIELDS, GET_FIELDS, page_reply
from telnyx_provider.sandbox.views import format_date
from tests.sandbox.test_sandbox_cli import PROVIDER_DIR, read_lines_until

EPOCH = 1_691_781_131  # 2023-08-11 19:12:11 UTC, the date of Telnyx's examples


def test_dates_in_both_formats():
    assert format_date(EPOCH) == "Fri, 11 Aug 2023 19:12:11 +0000"
    assert format_date(EPOCH + 0.9, "iso8601") == "2023-08-11T19:12:11Z"


def test_an_unknown_date_format_is_refused():
    with pytest.raises(ValueError, match="date_format"):
        Sandbox(port=0, date_format="unix")


def test_the_field_sets_are_the_specs():
    from tests.spec_conformance import load_spec

    schemas = load_spec()["components"]["schemas"]
    assert set(schemas["TexmlCreateCallRecordingResponseBody"]["properties"]) == CREATE_FIELDS
    assert set(schemas["TexmlGetCallRecordingResponseBody"]["properties"]) == GET_FIELDS


def test_a_page_leaves_out_links_it_does_not_have():
    page = {"recordings": [], "page": 0, "next_page_uri": None, "previous_page_uri": None, "uri": "/x"}
    assert page_reply(page, "recordings") == {"recordings": [], "page": 0, "uri": "/x"}


@pytest.mark.parametrize("strict", [True, False])
def test_fetch_and_start_replies_in_each_mode(strict):
    with Sandbox(port=0, strict_schema=strict, date_format="iso8601") as sb:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {sb.api_key}"
        account = f"{sb.base_url}/texml/Accounts/{sb.account_sid}"
        call = sb.create_call()
        started = session.post(f"{account}/Calls/{call}/Recordings.json", timeout=5).json()
        fetched = session.get(f"{account}/Recordings/{started['sid']}.json", timeout=5).json()
    assert started["date_created"].endswith("Z")
    assert ("track" in fetched, "status" in started) == (not strict, not strict)
    assert ("media_url" in fetched, "subresource_uris" in fetched) == (not strict, not strict)
    assert started["track"] == "both"
    assert fetched["status"] == "in-progress"


def test_the_command_line_options():
    parser = cli.build_parser()
    assert (parser.parse_args([]).strict_schema, parser.parse_args([]).date_format) == (True, "rfc2822")
    args = parser.parse_args(["--strict-schema", "--date-format", "iso8601"])
    assert (args.strict_schema, args.date_format) == (True, "iso8601")
    assert parser.parse_args(["--strict-schema", "--no-strict-schema"]).strict_schema is False
    with pytest.raises(SystemExit):
        parser.parse_args(["--date-format", "unix"])


def test_the_command_serves_a_strict_sandbox():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(PROVIDER_DIR), os.environ.get("PYTHONPATH", "")]))
    command = [sys.executable, "-m", "telnyx_provider.sandbox", "--port", "0", "--calls", "1"]
    process = subprocess.Popen(
        [*command, "--strict-schema", "--date-format", "iso8601"], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        lines = read_lines_until(process, "export AIRFLOW_CONN_TELNYX_DEFAULT=")
        fields = dict(line.split(": ", 1) for line in lines[:-1])
        headers = {"Authorization": f"Bearer {fields['api_key']}"}
        account = f"{fields['base_url']}/texml/Accounts/{fields['account_sid']}"
        started = requests.post(
            f"{account}/Calls/{fields['call_sid']}/Recordings.json", headers=headers, timeout=5
        ).json()
    finally:
        process.terminate()
        process.wait(10)
    assert "status" not in started
    assert started["start_time"].endswith("Z")
