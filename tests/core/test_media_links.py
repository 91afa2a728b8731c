"""Where the API key may go: the core's decision table for media links and redirects (pure, no I/O).

The decision is taken on the URL urllib3 connects to; links that ``urllib.parse`` and urllib3 read
differently are refused outright. The same table runs over real HTTP in
``tests/integration/test_integration_media_key.py``.
"""

from __future__ import annotations

import pytest
import requests
from urllib3.util import parse_url

from telnyx_provider import media_api
from telnyx_provider.errors import TelnyxApiError
from telnyx_provider.retry import is_retryable

BASE = "https://api.telnyx.com/v2"
KEY = "KEYsecret_media_links_0123456789"


def decide(link: str, base: str = BASE) -> bool:
    """Whether the GET of ``link`` carries the key (raises when refused)."""
    return media_api.media_request("rec-1", link, base_url=base, api_key=KEY).carries_key


@pytest.mark.parametrize(
    ("link", "sends_key"),
    [
        ("https://api.telnyx.com/v2/media/r.wav", True),
        ("https://api.telnyx.com:443/media/r.wav", True),
        ("HTTPS://API.TELNYX.COM/media/r.wav", True),  # scheme and host are case-insensitive
        ("https://Api.Telnyx.Com/media/r.wav?x=1#y", True),
        ("https://api.telnyx.com./media/r.wav", False),  # trailing dot: not the configured spelling
        ("https://api.telnyx.com.evil.example/r.wav", False),
        ("https://api.telnyx.com.evil/r.wav", False),
        ("https://evil-api.telnyx.com/r.wav", False),
        ("https://evilapi.telnyx.com/r.wav", False),
        ("https://telnyx.com/r.wav", False),
        ("https://xn--pi-6kc.telnyx.com/r.wav", False),  # an IDN look-alike, already encoded
        ("http://api.telnyx.com/media/r.wav", False),  # http downgrade of an https base
        ("https://api.telnyx.com:8443/media/r.wav", False),
        ("https://api.telnyx.com:80/media/r.wav", False),
        ("https://evil.example#@api.telnyx.com/r.wav", False),
        ("https://evil.example?@api.telnyx.com/r.wav", False),
        ("https://evil.example/@api.telnyx.com/r.wav", False),
        ("https://[::1]/r.wav", False),
        ("https://[::ffff:127.0.0.1]:443/r.wav", False),
        ("https://s3.amazonaws.com/bucket/r.wav?X-Amz-Signature=abc%2Fdef", False),
    ],
)
def test_the_key_goes_only_to_the_apis_own_origin(link, sends_key):
    assert decide(link) is sends_key


@pytest.mark.parametrize(
    ("base", "link", "sends_key"),
    [
        ("http://127.0.0.1:8765/v2", "http://127.0.0.1:8765/media/r.wav", True),
        ("http://127.0.0.1:8765/v2", "http://127.0.0.1:8766/media/r.wav", False),
        ("http://127.0.0.1:8765/v2", "http://127.0.0.2:8765/media/r.wav", False),
        ("http://127.0.0.1:8765/v2", "http://localhost:8765/media/r.wav", False),
        ("http://[::1]:8765/v2", "http://[::1]:8765/media/r.wav", True),
        ("http://[::1]:8765/v2", "http://[0:0::1]:8765/media/r.wav", False),  # spelled otherwise
        (
            "http://127.0.0.1:8765/v2",
            "https://127.0.0.1:8765/media/r.wav",
            False,
        ),  # an upgrade is another origin
    ],
)
def test_other_bases(base, link, sends_key):
    assert decide(link, base) is sends_key


@pytest.mark.parametrize(
    ("link", "reason"),
    [
        ("http://evil.example\\@api.telnyx.com/r.wav", "backslash"),
        ("https://evil.example\\\\@api.telnyx.com/r.wav", "backslash"),
        ("https://api.telnyx.com\\.evil.example/r.wav", "backslash"),
        ("https://user@api.telnyx.com/r.wav", "user or password"),
        ("https://api.telnyx.com@evil.example/r.wav", "user or password"),
        ("https://:@api.telnyx.com/r.wav", "user or password"),
        ("https://evil.example%5C@api.telnyx.com/r.wav", "user or password"),
        ("https://api.telnyx.com%2Eevil.example/r.wav", "unexpected characters"),
        ("https://api.telnyx.com%00/r.wav", "cannot be read"),
        ("https://[fe80::1%25eth0]/r.wav", "read its host differently"),
        ("https://[not-an-address]/r.wav", "cannot be read"),
        ("https://api.telnyx.com:99999/r.wav", "cannot be read"),
        ("https://api.telnyx.com:443:80/r.wav", "cannot be read"),
        ("https://\u0430pi.telnyx.com/r.wav", "non-ASCII"),  # a Cyrillic "a"
        ("https://api.telnyx.com\t/r.wav", "whitespace"),
        ("https://api.telnyx.com/r.wav\n", "whitespace"),
        ("https://api.telnyx.com /r.wav", "whitespace"),
        ("https://api.telnyx.com/r.wav\x00", "control"),
        ("https://api.telnyx.com/" + "a" * 20000, "longer than"),
    ],
)
def test_links_read_two_ways_are_refused_before_any_request(link, reason):
    with pytest.raises(TelnyxApiError) as caught:
        decide(link)
    error = caught.value
    assert reason in str(error)
    assert error.failure == "refused"
    assert not is_retryable(error)  # asking for the recording again gives the same link
    assert "evil" not in str(error)  # the link is never quoted


@pytest.mark.parametrize(
    "link",
    [
        "http://evil.example\\@api.telnyx.com/r.wav",
        "http://evil.example/\\@api.telnyx.com/r.wav",
        "https://evil.example%5C@api.telnyx.com/r.wav",
        "https://evil.example#@api.telnyx.com/r.wav",
        "https://api.telnyx.com.evil/r.wav",
    ],
)
def test_whatever_is_not_refused_is_decided_on_what_urllib3_connects_to(link):
    """The reason for the rule: for each link, either it is refused, or the key goes only where urllib3
    (through requests' own preparation) would connect."""
    try:
        carries = decide(link)
    except TelnyxApiError:
        return
    prepared = requests.Request("GET", link).prepare().url
    connects_to = parse_url(prepared).host
    assert carries is (connects_to == "api.telnyx.com")


def test_redirects_are_decided_again_and_a_chain_that_left_never_gets_the_key_back():
    own = media_api.media_request("rec-1", f"{BASE}/media/r.wav", base_url=BASE, api_key=KEY)
    assert own.carries_key

    relative = media_api.redirect_request(own, "/media/other.wav", base_url=BASE, api_key=KEY)
    assert relative.carries_key
    assert relative.url == "https://api.telnyx.com/media/other.wav"

    away = media_api.redirect_request(own, "//storage.example/r.wav?sig=1", base_url=BASE, api_key=KEY)
    assert (away.url, away.carries_key) == ("https://storage.example/r.wav?sig=1", False)

    back = media_api.redirect_request(away, f"{BASE}/media/r.wav", base_url=BASE, api_key=KEY)
    assert not back.carries_key


@pytest.mark.parametrize(
    "location",
    [
        "https://evil.example\\@api.telnyx.com/",
        "/\\evil.example/r.wav",
        "https://api.telnyx.com@evil.example/",
        "https://evil.example%5C@api.telnyx.com/",
        "https://evil.example\t/",
        "https://api.telnyx.com/\r\n\t@evil.example/",
        "ftp://evil.example/r.wav",
        "javascript:alert(1)",
        "https://\u0430pi.telnyx.com/",
    ],
)
def test_redirect_targets_read_two_ways_are_refused_as_received(location):
    own = media_api.media_request("rec-1", f"{BASE}/media/r.wav", base_url=BASE, api_key=KEY)
    with pytest.raises(TelnyxApiError) as caught:
        media_api.redirect_request(own, location, base_url=BASE, api_key=KEY)
    assert caught.value.failure == "refused"
    assert "a redirect from api.telnyx.com was refused" in str(caught.value)
    assert "evil" not in str(caught.value)


def test_a_prepared_url_that_goes_elsewhere_is_refused():
    request = media_api.media_request("rec-1", f"{BASE}/media/r.wav", base_url=BASE, api_key=KEY)
    media_api.check_prepared(request, "https://api.telnyx.com/media/r.wav")  # the same origin: fine
    for elsewhere in ("https://evil.example/media/r.wav", "http://api.telnyx.com/media/r.wav", None, "x"):
        with pytest.raises(TelnyxApiError, match="would connect elsewhere"):
            media_api.check_prepared(request, elsewhere)


def test_a_base_url_without_an_origin_gives_the_key_to_nobody():
    assert not decide("https://api.telnyx.com/r.wav", base="https://u@api.telnyx.com/v2")


def test_same_origin_refuses_what_link_origin_refuses():
    assert media_api.same_origin("https://API.telnyx.com/a", "https://api.telnyx.com:443/b")
    assert not media_api.same_origin("https://e.example\\@api.telnyx.com/", "https://api.telnyx.com/")


# -- review r-media: more spellings, each either the API's origin as urllib3 connects to it, or no key ------


@pytest.mark.parametrize(
    ("link", "outcome"),
    [
        ("https://api.telnyx.com:0/media/r.wav", "key"),  # port 0: urllib3 connects to 443 too
        ("https://api.telnyx.com:/media/r.wav", "key"),  # an empty port is the default one
        ("https://api.telnyx.com:0443/media/r.wav", "key"),  # leading zeros: port 443 to both parsers
        ("https://api.telnyx.com:+443/media/r.wav", "refused"),
        ("https://api.telnyx.com:443:443/r.wav", "refused"),
        ("https://api.telnyx.com%2e/r.wav", "refused"),  # percent-encoding in the host
        ("https://api.telnyx.com%00.evil/r.wav", "refused"),
        ("https://api.telnyx.com;@evil.example/r.wav", "refused"),
        ("https://[fe80::1%25eth0]:443/r.wav", "refused"),  # an IPv6 zone id, read two ways
        ("https://[fe80::1%eth0]/r.wav", "no key"),
        ("https://api.telnyx.com/../..//evil.example/r.wav", "key"),  # a path, not an authority
        ("https://api.telnyx.com/" + "a" * media_api.MAX_LINK_LENGTH, "refused"),
    ],
)
def test_more_spellings_of_the_origin(link, outcome):
    if outcome == "refused":
        with pytest.raises(TelnyxApiError) as caught:
            decide(link)
        assert caught.value.failure == "refused"
        return
    sends_key = decide(link)
    assert outcome == ("key" if sends_key else "no key")
    if sends_key:  # what requests prepares connects where the key was meant to go
        prepared = requests.Request("GET", link).prepare().url
        assert media_api.link_origin(prepared) == media_api.link_origin(BASE)


@pytest.mark.parametrize(
    "location", ["../../..//evil.example/r.wav", "/..//evil.example/r.wav", "./%2F%2Fevil.example/r.wav"]
)
def test_relative_redirects_that_climb_stay_on_the_origin(location):
    first = media_api.media_request("rec-1", f"{BASE}/media/a/b/r.wav", base_url=BASE, api_key=KEY)
    hop = media_api.redirect_request(first, location, base_url=BASE, api_key=KEY)
    assert media_api.link_origin(hop.url) == media_api.link_origin(BASE)
    assert parse_url(hop.url).host == "api.telnyx.com"
