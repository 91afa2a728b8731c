"""Latency of one sandbox request over keep-alive, and one client's throughput.

Prints figures; run with ``python benchmarks/sandbox_latency.py`` (the sandbox runs in this process
on a free loopback port). The standard library's server answers ~40 ms late over keep-alive unless
Nagle's algorithm is off; the sandbox turns it off (``disable_nagle_algorithm``), and this shows it.
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import time

import requests

from telnyx_provider.sandbox import Sandbox


def _percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p99 = ordered[int(len(ordered) * 0.99) - 1]
    return f"median {statistics.median(ordered) * 1e3:.3f} ms, p99 {p99 * 1e3:.3f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    with Sandbox(port=0) as sb:
        call_sid = sb.create_call()
        headers = {"Authorization": f"Bearer {sb.api_key}", "Accept": "application/json"}
        account = f"/v2/texml/Accounts/{sb.account_sid}"
        session = requests.Session()
        start = session.post(
            f"{sb.base_url}/texml/Accounts/{sb.account_sid}/Calls/{call_sid}/Recordings.json",
            headers=headers,
            timeout=5,
        )
        path = f"{account}/Recordings/{start.json()['sid']}.json"

        raw = http.client.HTTPConnection("127.0.0.1", sb.port, timeout=5)
        raw_samples = []
        for _ in range(args.requests):
            began = time.perf_counter()
            raw.request("GET", path, headers=headers)
            raw.getresponse().read()
            raw_samples.append(time.perf_counter() - began)

        session_samples = []
        began_all = time.perf_counter()
        for _ in range(args.requests):
            began = time.perf_counter()
            session.get(f"{sb.origin}{path}", headers=headers, timeout=5).raise_for_status()
            session_samples.append(time.perf_counter() - began)
        elapsed = time.perf_counter() - began_all
        connections = sb.stats()["connections_accepted"]
    print(f"GET one recording over keep-alive, {args.requests} requests each:")
    print(f"  http.client (server cost): {_percentiles(raw_samples)}")
    print(f"  requests.Session:          {_percentiles(session_samples)}")
    print(f"  one client thread:         {args.requests / elapsed:.0f} GET/s")
    print(f"  TCP connections accepted:  {connections} (keep-alive reused)")


if __name__ == "__main__":
    main()
