"""A local fake ("sandbox") of Telnyx's TeXML call-recording HTTP API, for tests, demos and benchmarks.

Standard library only, plus ``cryptography`` (imported when a sandbox is made) to sign status callbacks.
It serves the recording and transcription routes of ``https://api.telnyx.com/v2`` under
``http://HOST:PORT/v2`` with bearer authentication, Telnyx-shaped errors, a lazily evaluated recording state
machine, signed status callbacks, WAV media behind expiring pre-signed-looking links, and optional faults
(random or scripted), clock skew, list lag and page caps; ``/_sandbox/...`` routes control it::

    from telnyx_provider.sandbox import Sandbox

    with Sandbox(port=0, processing_delay=0.2) as sb:
        call_sid = sb.create_call()
        # POST {sb.base_url}/texml/Accounts/{sb.account_sid}/Calls/{call_sid}/Recordings.json ...
"""

from __future__ import annotations

from telnyx_provider.sandbox.sandbox import Sandbox

__all__ = ["Sandbox"]
