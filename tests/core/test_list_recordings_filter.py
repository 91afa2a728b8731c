"""The ``DateCreated>=`` filter of the account's recording list (the request the polling trigger sends)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from urllib.parse import urlencode

import pytest

from telnyx_provider import api
from telnyx_provider.errors import TelnyxValidationError


def test_the_filter_is_sent_as_date_created_with_the_greater_or_equal_operator_in_utc():
    moment = datetime(2026, 12, 1, 4, 30, 15, 999_000, tzinfo=timezone(timedelta(hours=1)))
    request = api.list_recordings("acc", page=2, page_size=1000, date_created_after=moment)
    assert request.query == {"Page": "2", "PageSize": "1000", "DateCreated>": "2026-12-01T03:30:15Z"}
    assert urlencode(request.query).endswith("DateCreated%3E=2026-12-01T03%3A30%3A15Z")


def test_a_naive_datetime_is_refused_before_any_request():
    with pytest.raises(TelnyxValidationError, match="date_created_after"):
        api.list_recordings("acc", date_created_after=datetime(2026, 12, 1))


def test_the_upper_bound_is_sent_with_the_lower_or_equal_operator_and_checked_strictly():
    request = api.list_recordings("acc", date_created_before=datetime(2026, 12, 2, tzinfo=timezone.utc))
    assert request.query == {"DateCreated<": "2026-12-02T00:00:00Z"}
    before = api.created_before("2026-12-02T00:00:00Z")
    assert before({"date_created": "2026-12-01T23:59:59Z"}) is True
    assert before({"date_created": "2026-12-02T00:00:00+00:00"}) is False  # as normalized from a reply
    assert before({"date_created": None}) is True  # the service applied its filter
    with pytest.raises(TelnyxValidationError, match="date_created_before"):
        api.list_recordings("acc", date_created_before=datetime(2026, 12, 1))


def test_a_bound_inside_a_second_is_checked_exactly_so_that_second_belongs_to_one_side():
    """Review of issue 18: the checks cut the bound to the second, so a recording of that second (dates have
    whole seconds) failed the upper check of the interval before and the lower check of the one after."""
    split = datetime(2026, 12, 2, 10, 0, 0, 500_000, tzinfo=timezone.utc)
    recording = {"date_created": "2026-12-02T10:00:00Z"}
    request = api.list_recordings("acc", date_created_before=split)
    assert request.query["DateCreated<"] == "2026-12-02T10:00:00Z"  # the service includes that second
    assert api.created_before(split)(recording) is True
    assert api.created_since(split)(recording) is False
    assert api.created_since("2026-12-02T10:00:00Z")(recording) is True
    assert api.created_before("2026-12-02T10:00:00Z")(recording) is False
    assert api.created_before("2026-12-02T10:00:00.5+00:00")(recording) is True
