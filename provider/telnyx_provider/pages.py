"""Following a listing page by page, so that it always ends: repeated pages and listings without end.

Pure: no I/O. A server that answers every page with the same one (Stoplight Prism serving Telnyx's spec
does: its example page always has a ``next_page_uri``), or a service that ignores ``Page``, would make a
paging loop request pages for ever. Every paging loop of the provider takes each page it read through
:class:`PageGuard`: a page that repeats the previous one ends the listing with a
:class:`~telnyx_provider.errors.TelnyxApiError` naming the path and the repeated page, instead of another
request; a listing given a bound (``max_pages``) ends with an error saying so when it would need more.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from telnyx_provider.errors import TelnyxApiError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from telnyx_provider.api import ApiRequest

_UNTRUSTED = "The service does not page this listing as the API describes; its pages cannot be trusted."


class PageGuard:
    """Watches the pages of one listing, one after the other.

    Call :meth:`check` on each page as soon as it is read (before using its items), then :meth:`has_next`
    to know whether to request another.

    :param key: the key of the page's items (``recordings``, ``transcriptions``).
    :param max_pages: the most pages this listing may read; ``None`` for no bound.
    :param bound_reason: why the listing has a bound, for the error raised when it is reached.
    """

    def __init__(self, key: str, *, max_pages: int | None = None, bound_reason: str = "") -> None:
        if max_pages is not None and (isinstance(max_pages, bool) or max_pages < 1):
            raise ValueError(f"max_pages must be a whole number >= 1, got {max_pages!r}")
        self.key = key
        self.max_pages = max_pages
        self.bound_reason = bound_reason
        #: Pages read so far.
        self.pages = 0
        self._previous: tuple[object, tuple[str, ...]] | None = None
        self._tokens: set[str] = set()

    def check(self, request: ApiRequest, page: Mapping[str, Any]) -> None:
        """Take in the page just read for ``request``.

        :raises TelnyxApiError: the page repeats the previous one: the same page number, or the same
            (non-empty) list of SIDs.
        """
        number = page.get("page")
        number = number if isinstance(number, int) and not isinstance(number, bool) else None
        items = page.get(self.key) or ()
        sids = tuple(str(item["sid"]) for item in items if isinstance(item, dict) and item.get("sid"))
        self.pages += 1
        previous, self._previous = self._previous, (number, sids)
        if previous is None:
            return
        same_number = number is not None and number == previous[0]
        if not same_number and not (sids and sids == previous[1]):
            return
        what = f"page number {number}" if same_number else f"the same {len(sids)} {self.key}"
        shown = ", ".join(sids[:3]) + (", ..." if len(sids) > 3 else "")
        raise TelnyxApiError(
            status=200,
            method=request.method,
            path=request.path,
            detail=(
                f"page {self.pages} of the {self.key} ({_query(request)}) repeats the page before it: {what} "
                f"again ({self.key}: {shown or 'none'}); a listing that repeats itself never ends, so no "
                "further page was requested"
            ),
            hint=_UNTRUSTED,
        )

    def follow_token(self, request: ApiRequest, token: str) -> str:
        """Return the ``PageToken`` of the next page, refusing one this listing followed already.

        :raises TelnyxApiError: the token leads back to a page already read.
        """
        if token in self._tokens:
            raise TelnyxApiError(
                status=200,
                method=request.method,
                path=request.path,
                detail=(
                    f"page {self.pages} of the {self.key} links to a page already read (PageToken={token}); "
                    "a listing that repeats itself never ends, so no further page was requested"
                ),
                hint=_UNTRUSTED,
            )
        self._tokens.add(token)
        return token

    def has_next(self, request: ApiRequest, page: Mapping[str, Any]) -> bool:
        """Whether the listing goes on after ``page`` (it has a ``next_page_uri`` and items).

        :raises TelnyxApiError: it goes on, but ``max_pages`` pages were read already.
        """
        if not page.get("next_page_uri") or not page.get(self.key):
            return False
        if self.max_pages is not None and self.pages >= self.max_pages:
            size = request.query.get("PageSize")
            raise TelnyxApiError(
                status=200,
                method=request.method,
                path=request.path,
                detail=(
                    f"the {self.key} run past {self.max_pages} pages"
                    + (f" of {size}" if size else "")
                    + f", the bound of this listing ({self.bound_reason or f'max_pages={self.max_pages}'}); "
                    "no further page was requested"
                ),
            )
        return True


def _query(request: ApiRequest) -> str:
    query = "&".join(f"{name}={value}" for name, value in request.query.items())
    return query or "no query"
