"""Command line of the sandbox: ``telnyx-sandbox`` / ``python -m telnyx_provider.sandbox``."""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
import threading
from typing import TYPE_CHECKING

from telnyx_provider.sandbox.faults import validate_faults
from telnyx_provider.sandbox.links import DEFAULT_TTL
from telnyx_provider.sandbox.media import MAX_SECONDS
from telnyx_provider.sandbox.media_route import MEDIA_FORMATS, MEDIA_FRAMINGS
from telnyx_provider.sandbox.sandbox import Sandbox
from telnyx_provider.sandbox.stats import ALL_FAULT_KINDS, FAULT_KINDS
from telnyx_provider.sandbox.views import DATE_FORMATS

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import FrameType


def _fault_list(raw: str) -> tuple[str, ...]:
    try:
        return validate_faults(kind for kind in raw.split(",") if kind.strip())
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the sandbox command."""
    parser = argparse.ArgumentParser(
        prog="telnyx-sandbox", description="Run a local fake of Telnyx's TeXML call-recording API."
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: %(default)s)")
    parser.add_argument(
        "--port", type=int, default=8765, help="port; 0 picks a free one (default: %(default)s)"
    )
    parser.add_argument("--api-key", help="bearer token to accept (default: generated)")
    parser.add_argument("--account-sid", help="account sid to serve (default: a uuid4)")
    parser.add_argument(
        "--recording-seconds",
        type=float,
        help="recordings also end this many seconds after they start (default: never)",
    )
    parser.add_argument(
        "--processing-delay",
        type=float,
        default=0.5,
        help="seconds from a recording's end to 'completed' (default: %(default)s)",
    )
    parser.add_argument(
        "--fault-rate",
        type=float,
        default=0.0,
        help="fraction of /v2 requests that get a fault (default: %(default)s)",
    )
    parser.add_argument(
        "--faults",
        type=_fault_list,
        default=FAULT_KINDS,
        help="comma-separated fault kinds among {} (default: {})".format(
            ",".join(ALL_FAULT_KINDS), ",".join(FAULT_KINDS)
        ),
    )
    parser.add_argument("--retry-after", type=int, default=1, help="Retry-After of injected 429s, seconds")
    parser.add_argument("--slow-seconds", type=float, default=1.0, help="delay of 'slow' faults, seconds")
    parser.add_argument("--seed", type=int, help="seed for reproducible faults")
    parser.add_argument(
        "--clock-skew",
        type=float,
        default=0.0,
        help="seconds the service's clock is off from ours; every reported date is shifted (default: 0)",
    )
    parser.add_argument(
        "--list-lag",
        type=float,
        default=0.0,
        help="seconds a new recording stays out of the list endpoints (default: 0)",
    )
    parser.add_argument(
        "--max-page-size",
        type=int,
        help="largest list page served, whatever PageSize asks (default: no cap below the spec's 1000)",
    )
    parser.add_argument(
        "--media-url-ttl",
        type=float,
        default=DEFAULT_TTL,
        help="seconds a media_url stays valid after it was served (default: %(default)s)",
    )
    parser.add_argument(
        "--media-seconds-cap",
        type=int,
        default=MAX_SECONDS,
        help="longest media served, seconds (default: %(default)s)",
    )
    parser.add_argument(
        "--media-cut-rate",
        type=float,
        default=0.0,
        help="fraction of media transfers cut midway (default: %(default)s)",
    )
    parser.add_argument(
        "--media-framing",
        choices=MEDIA_FRAMINGS,
        default="length",
        help="media bodies: Content-Length, chunked, or no length at all (default: %(default)s)",
    )
    parser.add_argument(
        "--media-format",
        choices=tuple(MEDIA_FORMATS),
        default="wav",
        help="audio served (default: %(default)s)",
    )
    parser.add_argument(
        "--media-bytes-per-second",
        type=float,
        default=None,
        help="send media no faster than this (default: at once)",
    )
    parser.add_argument(
        "--strict-schema",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="reply with exactly the fields of each route's response schema in Telnyx's spec: no 'track' on "
        "fetched or listed recordings, no 'status' on start and update replies (default: on; "
        "--no-strict-schema for the older, fuller replies)",
    )
    parser.add_argument(
        "--date-format",
        choices=DATE_FORMATS,
        default="rfc2822",
        help="how dates are written: rfc2822 (Fri, 11 Aug 2023 19:12:11 +0000, Telnyx's examples) or iso8601 "
        "(2023-08-11T19:12:11Z, the spec's date-time) (default: %(default)s)",
    )
    parser.add_argument(
        "--calls", type=int, default=0, help="create N live calls at start and print their sids"
    )
    parser.add_argument(
        "--seed-history",
        type=int,
        metavar="DAYS",
        help="give the account recordings created over the DAYS whole UTC days before today, from every "
        "source (some absent, the last day's latest not final yet)",
    )
    parser.add_argument(
        "--history-per-day",
        type=int,
        default=20,
        help="recordings created on each day of --seed-history (default: %(default)s)",
    )
    parser.add_argument(
        "--history-seconds",
        type=int,
        default=60,
        help="duration of each recording of --seed-history (default: %(default)s)",
    )
    return parser


def _announce(sandbox: Sandbox, calls: int) -> None:
    """Print what a user needs to point a client at the sandbox, one ``name: value`` per line."""
    print(f"base_url: {sandbox.base_url}")
    print(f"api_key: {sandbox.api_key}")
    print(f"account_sid: {sandbox.account_sid}")
    print(f"public_key: {sandbox.public_key}")
    for _ in range(calls):
        print(f"call_sid: {sandbox.create_call()}")
    print(f"export AIRFLOW_CONN_TELNYX_DEFAULT={shlex.quote(sandbox.airflow_conn_json())}")
    sys.stdout.flush()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the sandbox until SIGINT or SIGTERM (exit status 0; 1 if the port cannot be bound).

    Prints the base URL, API key, account sid, callback public key, any created call sids and an
    ``export AIRFLOW_CONN_TELNYX_DEFAULT='...'`` line, then serves.

    :param argv: arguments without the program name (default: ``sys.argv[1:]``).
    :return: the exit status.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        sandbox = Sandbox(
            port=args.port,
            recording_seconds=args.recording_seconds,
            processing_delay=args.processing_delay,
            fault_rate=args.fault_rate,
            faults=args.faults,
            retry_after=args.retry_after,
            slow_seconds=args.slow_seconds,
            seed=args.seed,
            api_key=args.api_key,
            account_sid=args.account_sid,
            host=args.host,
            clock_skew=args.clock_skew,
            list_lag=args.list_lag,
            max_page_size=args.max_page_size,
            media_url_ttl=args.media_url_ttl,
            media_seconds_cap=args.media_seconds_cap,
            media_cut_rate=args.media_cut_rate,
            media_framing=args.media_framing,
            media_format=args.media_format,
            media_bytes_per_second=args.media_bytes_per_second,
            strict_schema=args.strict_schema,
            date_format=args.date_format,
        )
        history = (
            None
            if args.seed_history is None
            else sandbox.seed_history(
                args.seed_history,
                per_day=args.history_per_day,
                audio_seconds=args.history_seconds,
                seed=args.seed,
            )
        )
    except ValueError as error:  # an option out of range
        parser.error(str(error))
    try:
        sandbox.start()
    except OSError as error:
        print(f"telnyx-sandbox: cannot listen on {args.host}:{args.port}: {error}", file=sys.stderr)
        return 1
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    # signal.signal only works on the main thread; elsewhere (an embedding test) the caller stops us.
    on_main = threading.current_thread() is threading.main_thread()
    previous = (
        {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)} if on_main else {}
    )
    try:
        _announce(sandbox, args.calls)
        if history is not None:
            print(
                f"history: {history['recordings']} recordings on {history['calls']} calls over "
                f"{args.seed_history} days, {len(history['not_final'])} not final"
            )
            sys.stdout.flush()
        while not stop.wait(0.5):  # a timed wait lets the signal handler run promptly
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sandbox.stop()
    return 0
