"""Exceptions raised by the Telnyx provider.

Every error a user sees comes from here: :class:`TelnyxValidationError` for bad input (raised before any
request is sent) and :class:`TelnyxApiError` for a reply Telnyx refused or that could not be read.
Neither ever carries the API key.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping

from telnyx_provider._compat import AirflowException, AirflowFailException


class TelnyxValidationError(AirflowException, ValueError):
    """A value given to the provider is not one the Telnyx API accepts; nothing was sent."""

    def __init__(self, argument: str, value: object, expected: str) -> None:
        self.argument = argument
        self.value = value
        self.expected = expected
        super().__init__(f"Invalid value for {argument!s}: {value!r}; expected {expected}.")

    def __reduce__(self) -> tuple[type[TelnyxValidationError], tuple[str, object, str]]:
        return type(self), (self.argument, self.value, self.expected)


class TelnyxApiError(AirflowException):
    """Telnyx answered with an error, or with a reply that could not be understood.

    :param status: HTTP status of the reply (``None`` when no reply arrived).
    :param method: HTTP method of the request.
    :param path: path of the request below the base URL (never a full URL with credentials).
    :param code: Telnyx's error code from the ``{"errors": [...]}`` body, if any.
    :param title: Telnyx's error title, if any.
    :param detail: Telnyx's error detail, or the start of an unreadable body.
    :param hint: extra advice for the reader.
    :param headers: reply headers that matter for retrying (``Retry-After``, ``x-ratelimit-*``); their names
        are kept in lower case, whoever builds the error.
    :param failure: when no reply came, what went wrong: ``"connect"`` (the request was never sent),
        ``"timeout"`` (sent, but no reply within the read timeout: the service may still carry it out),
        ``"connection"`` (dropped or reset: the request may or may not have been carried out), ``"tls"``
        (certificate verification failed: not retried), ``"refused"`` (the provider refused to send it: a
        media link or redirect it may not follow; not retried) or ``"rate_limited"`` (not sent: the service
        asked every request of the connection to wait longer than this one may). ``None`` when unknown or
        when a reply came.
    """

    def __init__(
        self,
        *,
        status: int | None,
        method: str,
        path: str,
        code: str | None = None,
        title: str | None = None,
        detail: str | None = None,
        hint: str | None = None,
        headers: Mapping[str, str] | None = None,
        failure: str | None = None,
    ) -> None:
        self.status = status
        self.method = method
        self.path = path
        self.code = code
        self.title = title
        self.detail = detail
        self.hint = hint
        self.headers = {str(name).lower(): value for name, value in (headers or {}).items()}
        self.failure = failure
        super().__init__(self._message())

    def _message(self) -> str:
        where = f"{self.method} {self.path}"
        status = f"HTTP {self.status}" if self.status is not None else "no reply"
        parts = [f"Telnyx API error: {status} on {where}"]
        if self.code or self.title:
            parts.append(f"code {self.code or '-'} ({self.title or 'no title'})")
        if self.detail:
            parts.append(self.detail)
        message = ": ".join(parts[:1]) + (" - " + "; ".join(parts[1:]) if parts[1:] else "")
        return f"{message}. {self.hint}" if self.hint else message

    def redacted(self, secret: str) -> TelnyxApiError:
        """This error with ``secret`` blanked out of the text quoted from the reply.

        A proxy's error page may echo the request's headers back, ``Authorization`` included.
        """
        if not secret or secret not in str(self):
            return self
        state = {
            name: value.replace(secret, "***") if isinstance(value, str) else value
            for name, value in self.__dict__.items()
        }
        return _rebuild_api_error(state, type(self))

    def __reduce__(self) -> tuple[object, ...]:
        # Keyword-only __init__: rebuild through a helper so the error survives pickling
        # (Airflow ships exceptions between processes).
        return _rebuild_api_error, (self.__dict__.copy(), type(self))


#: The hint of a failed TLS verification, from the sync hook and the async client alike.
TLS_HINT = (
    "TLS verification failed (it is always on): check the certificate of the connection's host, or point "
    "the connection extra ca_bundle at a CA bundle that signs it."
)


class UncertainStartError(TelnyxApiError):
    """A start may have gone through, and which recording (if any) is its own is not proven: none was adopted.

    Raised instead of sending the start again when that could record the call twice (a reply lost after the
    request was sent, a 5xx, a timeout). The message says so and names what was seen on the call.
    """


class AmbiguousStartError(UncertainStartError):
    """A start's reply was lost and new recordings on the call could be its own or another start's.

    Several new recordings match it, or one matches a one-track start (no field of Telnyx's list tells an
    ``inbound`` recording from an ``outbound`` one): the provider neither adopts one nor sends the start
    again, and names them.
    """


class RecordingFailedError(AirflowFailException):
    """The recording ended without audio (``absent``), failed or was deleted: waiting cannot succeed.

    A subclass of ``AirflowFailException``, so the task fails without retrying (or is skipped with
    ``soft_fail``).
    """


class RecordingNotReadyError(AirflowException):
    """The recording has no final audio yet (still recording or processing); nothing was written.

    A plain ``AirflowException``: a task retry may find the recording final.
    """


class RecordingStorageError(AirflowException):
    """Storing a recording's audio failed: the destination exists, another download is writing it, or the
    stored copy does not match.

    Nothing is left at the destination by a failed download; a mismatch after an upload names both sides.
    """


class RecordingIncompleteError(RecordingStorageError):
    """A recording's audio arrived, but its end could not be proven: nothing was stored, nothing deleted.

    A download is whole only when its length is proven: by ``Content-Length``, by the chunked framing's last
    chunk, or by the audio's own header (a WAV's RIFF size). A reply with none of them (an MP3 sent without
    a length, ended by closing the connection), or one whose header declares more than arrived, is refused.

    :param recording_sid: the recording.
    :param received: the bytes received.
    :param missing: what proof was missing or failed, in words.
    :param retryable: whether another attempt may prove it (a cut WAV may arrive whole next time; an MP3
        without a length never can).
    """

    def __init__(self, recording_sid: str, received: int, missing: str, *, retryable: bool) -> None:
        self.recording_sid = recording_sid
        self.received = received
        self.missing = missing
        self.retryable = retryable
        super().__init__(
            f"The download of recording {recording_sid} is incomplete or its end cannot be proven "
            f"({received} bytes received; {missing}). Nothing was stored and the recording was not deleted."
        )

    def __reduce__(self) -> tuple[object, ...]:
        return _rebuild_incomplete, (self.recording_sid, self.received, self.missing, self.retryable)


def _rebuild_incomplete(
    recording_sid: str, received: int, missing: str, retryable: bool
) -> RecordingIncompleteError:
    return RecordingIncompleteError(recording_sid, received, missing, retryable=retryable)


def transport_detail(error: BaseException) -> str:
    """A short description of a transport failure (no reply): its type and the start of its message."""
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:200]}" if text else type(error).__name__


def _rebuild_api_error(
    state: dict[str, object], cls: type[TelnyxApiError] = TelnyxApiError
) -> TelnyxApiError:
    error = cls.__new__(cls)
    error.failure = None  # errors pickled before ``failure`` existed
    error.__dict__.update(state)
    AirflowException.__init__(error, error._message())
    return error
