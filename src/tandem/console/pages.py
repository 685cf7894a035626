"""Paging through a list page: the offset in the URL, links to the previous and next page."""

from dataclasses import dataclass

from fastapi import Request

from tandem.pagination import MAX_OFFSET, PageParams

PAGE_SIZE = 50


def pager_from(request: Request, size: int = PAGE_SIZE) -> PageParams:
    try:
        offset = int(request.query_params.get("offset", "0"))
    except ValueError:
        offset = 0
    return PageParams(limit=size, offset=min(max(offset, 0), MAX_OFFSET))


@dataclass(frozen=True)
class Pager:
    request: Request
    params: PageParams
    total: int

    @property
    def first(self) -> int:
        return self.params.offset + 1 if self.total else 0

    @property
    def last(self) -> int:
        return min(self.params.offset + self.params.limit, self.total)

    def _url(self, offset: int) -> str:
        url = self.request.url.remove_query_params("notice").include_query_params(offset=offset)
        return f"{url.path}?{url.query}"

    @property
    def previous_url(self) -> str | None:
        if self.params.offset <= 0:
            return None
        return self._url(max(self.params.offset - self.params.limit, 0))

    @property
    def next_url(self) -> str | None:
        if self.params.offset + self.params.limit >= self.total:
            return None
        return self._url(self.params.offset + self.params.limit)
