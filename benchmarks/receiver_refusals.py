"""Benchmark: what refused callbacks cost the receiver, and whether their timing tells which ids exist.

Prints figures; it is not a test. The receiver (the plugin's FastAPI app) runs on uvicorn on 127.0.0.1 in this
process, with a throwaway Airflow home (SQLite, migrated) and one Telnyx connection, ``telnyx_default``, in an
environment variable. A secrets backend of the benchmark's own, consulted first by Airflow, counts the
connection lookups. Requests go one at a time over one keep-alive HTTP connection:

(a) junk: no signature headers, a new random ``conn_id`` each (what a scanner sends);
(b) a well-formed, fresh signature by a key the connection does not hold, naming ``telnyx_default``;
(c) the same, naming one connection that does not exist;
(d) the same, naming a new connection id that does not exist each time (no cache can help).

For each: the answer (status and body), the lookups it cost, and the time to answer (median and 90th
percentile). (b) and (c) should be alike in all three: neither the answer nor its time says whether
``telnyx_default`` exists. (d) pays one lookup each: its time is the secrets backends' (environment, then the
metadata database), which the receiver cannot hide.

    python benchmarks/receiver_refusals.py              # 300 requests per kind
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import http.client
import json
import os
import shlex
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timezone
from typing import Any, ClassVar
from urllib.parse import urlencode

ACCOUNT_SID = "61bf923e-5e4d-4595-a110-56190ea18a1b"


def prepare_airflow(home: str) -> None:
    """A throwaway Airflow home with a migrated SQLite database, and the counting secrets backend.

    The environment is set before Airflow is first imported (it reads its configuration then); the backend
    class is made once Airflow can be imported, before the first lookup loads it by name.
    """
    os.environ.update(
        {
            "AIRFLOW_HOME": home,
            "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "ERROR",
        }
    )
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "provider"))
    from airflow.secrets import BaseSecretsBackend
    from airflow.utils import db

    class CountingBackend(BaseSecretsBackend):  # type: ignore[misc]
        """Answers nothing; counts every connection id it is asked for (then env and the database answer)."""

        lookups: ClassVar[list[str]] = []

        def get_conn_value(self, conn_id: str, team_name: str | None = None) -> str | None:
            self.lookups.append(conn_id)
            return None

    sys.modules[__name__].CountingBackend = CountingBackend  # type: ignore[attr-defined]
    os.environ["AIRFLOW__SECRETS__BACKEND"] = f"{__name__}.CountingBackend"  # read at each lookup
    db.resetdb()


def signed_headers(private: Any, body: bytes) -> dict[str, str]:
    stamp = str(int(time.time()))
    signature = private.sign(stamp.encode() + b"|" + body)
    return {
        "Content-Type": "application/x-www-form-urlencoded",
        "telnyx-signature-ed25519": base64.b64encode(signature).decode(),
        "telnyx-timestamp": stamp,
    }


def measure(
    conn: http.client.HTTPConnection, requests_: list[tuple[dict[str, str], dict[str, str], bytes]]
) -> dict[str, Any]:
    backend = sys.modules[__name__].CountingBackend  # type: ignore[attr-defined]
    backend.lookups.clear()
    times: list[float] = []
    answers: set[tuple[int, bytes]] = set()
    for params, headers, body in requests_:
        started = time.perf_counter()
        # http.client sends a small body with the headers in one write (no Nagle/delayed-ACK stall)
        conn.request("POST", f"/recording-status?{urlencode(params)}", body=body, headers=headers)
        reply = conn.getresponse()
        content = reply.read()
        times.append(time.perf_counter() - started)
        answers.add((reply.status, content))
    return {"answers": answers, "lookups": len(backend.lookups), "seconds": sum(times)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300, help="requests per kind")
    args = parser.parse_args(argv)
    command = "python benchmarks/receiver_refusals.py " + shlex.join(
        argv if argv is not None else sys.argv[1:]
    )
    print(f"# {command.strip()}  ({datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC)", flush=True)
    home = tempfile.mkdtemp(prefix="telnyx-receiver-bench-")
    try:
        run(args, home)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def run(args: argparse.Namespace, home: str) -> None:
    prepare_airflow(home)

    import uvicorn
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from telnyx_provider.plugins.callbacks import ReceiverSettings, create_app

    owner = Ed25519PrivateKey.generate()
    public = owner.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    os.environ["AIRFLOW_CONN_TELNYX_DEFAULT"] = json.dumps(
        {
            "conn_type": "telnyx",
            "login": ACCOUNT_SID,
            "extra": {"public_key": base64.b64encode(public).decode()},
        }
    )
    forger = Ed25519PrivateKey.generate()
    sock = socket.socket()
    # Answers go out as two writes (head, body): without TCP_NODELAY (which accepted sockets inherit on
    # Linux) Nagle's algorithm and the client's delayed ACK add ~40 ms to every answer and hide the rest.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(
        uvicorn.Config(create_app(ReceiverSettings()), log_level="critical", lifespan="off")
    )
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            if time.monotonic() > deadline:
                raise SystemExit("uvicorn did not start")
            time.sleep(0.02)
        conn = http.client.HTTPConnection("127.0.0.1", sock.getsockname()[1], timeout=30)
        conn.connect()
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def body() -> bytes:
            fields = {
                "AccountSid": ACCOUNT_SID,
                "RecordingSid": str(uuid.uuid4()),
                "RecordingStatus": "completed",
            }
            return urlencode(fields).encode()

        def forged(conn_id: str) -> tuple[dict[str, str], dict[str, str], bytes]:
            payload = body()
            return {"conn_id": conn_id}, signed_headers(forger, payload), payload

        form = {"Content-Type": "application/x-www-form-urlencoded"}
        n = args.requests
        measure(conn, [forged("telnyx_default") for _ in range(20)])  # warm-up: imports, pools
        kinds = {
            "(a) junk (unsigned, a new conn_id each)": [
                ({"conn_id": f"junk_{uuid.uuid4().hex}"}, form, body()) for _ in range(n)
            ],
            "(b) wrong key, existing connection": [forged("telnyx_default") for _ in range(n)],
            "(c) wrong key, one unknown connection": [forged("no_such_connection") for _ in range(n)],
            "(d) wrong key, a new unknown connection each": [
                forged(f"nope_{uuid.uuid4().hex}") for _ in range(n)
            ],
        }
        print("| requests | answers (status, body) | connection lookups | median (ms) | p90 (ms) |")
        print("|---|---|---:|---:|---:|")
        labels = list(kinds)
        results: dict[str, dict[str, Any]] = {
            label: {"times": [], "answers": set(), "lookups": 0} for label in labels
        }
        for index in range(n):  # interleaved: drift of the machine's load falls on every kind alike
            for label in labels:
                result = measure(conn, [kinds[label][index]])
                results[label]["times"].append(result["seconds"])
                results[label]["answers"] |= result["answers"]
                results[label]["lookups"] += result["lookups"]
        for label in labels:
            times = sorted(results[label]["times"])
            answers = ", ".join(
                f"{code} {content.decode()}" for code, content in sorted(results[label]["answers"])
            )
            print(
                f"| {label}: {n} | {answers} | {results[label]['lookups']} "
                f"| {statistics.median(times) * 1000:.2f} | {times[int(len(times) * 0.9)] * 1000:.2f} |",
                flush=True,
            )
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


if __name__ == "__main__":
    main()
