"""Telnyx's response schemas as a strict referee of the sandbox's replies: the test world is Telnyx's.

:class:`SpecReferee` reads Telnyx's OpenAPI spec for TeXML recordings (``tests/contract/``), finds the
operation a request addresses from its method and path (the spec's own path templates, not the sandbox's
routing), and validates a reply against that operation's response schema with ``jsonschema``, every object
schema closed (``additionalProperties: false``): a field the spec does not list is an error.

:class:`ReplyAudit` sees every reply a sandbox writes on ``/v2`` (it wraps the sandbox's one writing point,
from the test side only) and has the referee judge the replies of sandboxes built with ``strict_schema=True``.
``tests/conftest.py`` runs one audit per test and fails the test on any violation.

Where the referee is wider than the spec's letter, on purpose (each is Telnyx's documented behaviour the
recordings spec abbreviates; none carries a guarantee the provider relies on):

- error bodies: the spec defines only the 404's, ``{"errors": [{"detail"}]}``; every error reply is held
  to it, with Telnyx's general error object's ``code`` and ``title`` allowed beside ``detail`` (the
  provider only quotes them in messages);
- a recording's ``status`` may be ``absent`` (a recording without audio: the callbacks' event, and the status
  enum of the same spec's conference recordings; the call recording enum lists four).

Dates must be in the sandbox's ``date_format``: RFC 2822 or RFC 3339 (ISO 8601), as the spec's ``date-time``.
"""

from __future__ import annotations

import copy
import json
import re
import threading
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pytest

SPEC_PATH = Path(__file__).resolve().parent / "contract" / "texml-recordings-openapi.json"
#: The spec's paths are relative to its server, ``https://api.telnyx.com/v2``.
BASE_PATH = "/v2"
_RFC2822 = re.compile(r"^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} [+-]\d{4}$")
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


def load_spec() -> dict[str, Any]:
    """Telnyx's spec as published (a fresh copy each call)."""
    return json.loads(SPEC_PATH.read_text())


def _inline(node: Any, components: dict[str, Any]) -> Any:
    """``node`` with every ``#/components/...`` reference replaced by (a copy of) its target."""
    if isinstance(node, list):
        return [_inline(item, components) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        kind, name = node["$ref"].removeprefix("#/components/").split("/")
        target = _inline(copy.deepcopy(components[kind][name]), components)
        siblings = {key: _inline(value, components) for key, value in node.items() if key != "$ref"}
        return {**siblings, **target} if isinstance(target, dict) else target
    return {key: _inline(value, components) for key, value in node.items()}


def close_objects(schema: Any) -> Any:
    """Add ``additionalProperties: false`` to every object schema with ``properties`` that has no rule of its
    own (in place, and returned): a field the schema does not list is then an error."""
    if isinstance(schema, list):
        for item in schema:
            close_objects(item)
    elif isinstance(schema, dict):
        if "properties" in schema and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
        for value in schema.values():
            close_objects(value)
    return schema


def _date_checker(date_format: str | None) -> Any:
    from jsonschema import FormatChecker

    checker = FormatChecker(formats=())

    @checker.checks("date-time", raises=(TypeError, ValueError))
    def date_time(value: object) -> bool:
        if not isinstance(value, str):
            return True  # the type keyword judges non-strings
        rfc2822 = bool(_RFC2822.match(value)) and parsedate_to_datetime(value) is not None
        rfc3339 = bool(_RFC3339.match(value))
        return {"rfc2822": rfc2822, "iso8601": rfc3339}.get(date_format or "", rfc2822 or rfc3339)

    return checker


@dataclass(frozen=True)
class Operation:
    """One operation of the spec: its method, path template and responses (references inlined)."""

    method: str
    template: str
    pattern: re.Pattern[str]
    responses: dict[str, Any]


class SpecReferee:
    """Judges replies against the spec's response schemas, closed to extra fields.

    :param spec: the spec (default: Telnyx's, from ``tests/contract/``); tests may pass an altered copy.
    """

    def __init__(self, spec: dict[str, Any] | None = None) -> None:
        spec = copy.deepcopy(spec) if spec is not None else load_spec()
        components = spec["components"]
        components["schemas"]["TexmlRecordingStatus"]["enum"].append("absent")
        error = components["schemas"]["call-scripting_ResourceNotFoundError"]
        error["properties"]["errors"]["items"]["properties"].update(
            {"code": {"type": "string"}, "title": {"type": "string"}}
        )
        self.error_schema = close_objects(_inline(error, components))
        self.operations: list[Operation] = []
        for template, methods in spec["paths"].items():
            regex = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(BASE_PATH + template))
            for method, operation in methods.items():
                responses = close_objects(_inline(operation.get("responses", {}), components))
                self.operations.append(Operation(method.upper(), template, re.compile(regex), responses))

    def operation(self, method: str, path: str) -> Operation | None:
        """The spec's operation for ``method`` on ``path`` (``/v2/...``, no query), or None."""
        for operation in self.operations:
            if operation.method == method and operation.pattern.fullmatch(path):
                return operation
        return None

    def judge(
        self, method: str, path: str, status: int, body: bytes, *, date_format: str | None = None
    ) -> list[str]:
        """What is wrong with a reply, as sentences; empty when it conforms.

        :param date_format: the sandbox's (``rfc2822`` or ``iso8601``); None accepts either.
        """
        from jsonschema import Draft202012Validator

        where = f"{method} {path} -> {status}"
        if status >= 400:
            schema: Any = self.error_schema
        else:
            operation = self.operation(method, path)
            if operation is None:
                return [f"{where}: no operation of the spec has this method and path"]
            response = operation.responses.get(str(status))
            if response is None:
                known = sorted(operation.responses)
                return [f"{where}: the spec's replies to {method} {operation.template} are {known}"]
            content = response.get("content")
            if content is None:
                return [] if not body else [f"{where}: the spec's {status} has no body, got {body[:80]!r}"]
            schema = content["application/json"]["schema"]
        try:
            payload = json.loads(body)
        except ValueError:
            return [f"{where}: the body is not JSON: {body[:80]!r}"]
        validator = Draft202012Validator(schema, format_checker=_date_checker(date_format))
        return [
            f"{where}: {'/'.join(map(str, error.absolute_path)) or '(body)'}: {error.message}"
            for error in sorted(validator.iter_errors(payload), key=lambda error: list(error.absolute_path))
        ]


@lru_cache(maxsize=1)
def telnyx_referee() -> SpecReferee:
    """The referee for Telnyx's spec as published (built once)."""
    return SpecReferee()


@dataclass
class AuditedReply:
    """A reply a sandbox wrote: the request, the status, whether the sandbox was strict, what was wrong."""

    method: str
    path: str
    status: int
    strict: bool
    problems: list[str] = field(default_factory=list)


class ReplyAudit:
    """Sees every ``/v2`` reply any sandbox of this process writes, and judges those of strict sandboxes.

    :param referee: the judge (default: Telnyx's spec).
    """

    def __init__(self, referee: SpecReferee | None = None) -> None:
        self.referee = referee or telnyx_referee()
        self.replies: list[AuditedReply] = []
        self._lock = threading.Lock()

    def install(self, monkeypatch: pytest.MonkeyPatch) -> ReplyAudit:
        """Wrap the sandbox's reply writer (undone by ``monkeypatch`` at the end of the test)."""
        from telnyx_provider.sandbox.server import SandboxRequestHandler

        original = SandboxRequestHandler._send
        audit = self

        def send(handler: SandboxRequestHandler, reply: Any, *args: Any, **kwargs: Any) -> None:
            audit.observe(handler, reply.status, reply.body)
            original(handler, reply, *args, **kwargs)  # how the body goes out is not the audit's business

        monkeypatch.setattr(SandboxRequestHandler, "_send", send)
        return self

    def observe(self, handler: Any, status: int, body: bytes) -> None:
        """Record (and, for a strict sandbox, judge) one reply about to be written."""
        path = handler.path.partition("?")[0]
        if not path.startswith(BASE_PATH + "/"):
            return  # the sandbox's own /_sandbox and /media routes are not Telnyx's API
        api = handler.server.api
        strict = bool(api.strict_schema)
        problems = (
            self.referee.judge(handler.command, path, status, body, date_format=api.store.date_format)
            if strict
            else []
        )
        with self._lock:
            self.replies.append(AuditedReply(handler.command, path, status, strict, problems))

    def judged(self) -> list[AuditedReply]:
        """The replies of strict sandboxes seen so far."""
        with self._lock:
            return [reply for reply in self.replies if reply.strict]

    def violations(self) -> list[str]:
        """Every problem found so far, one sentence each."""
        return [problem for reply in self.judged() for problem in reply.problems]

    def forget(self) -> None:
        """Drop what was seen (a test that provoked violations on purpose)."""
        with self._lock:
            self.replies.clear()
