"""Vendor-free paginators.

A paginator is data (a pydantic model a spec declares) plus one method, `next_page`, that looks at the page
just read and says how to ask for the next one, or None when the stream is done. The request itself is
rendered by the reader from the stream's templates; a paginator only changes template variables, query
params, body fields, or replaces the URL outright (next-URL and Link-header styles).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Annotated, Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field

from .http import json_path


@dataclass(frozen=True)
class PageState:
    """Where the next page starts."""

    variables: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    body: dict[str, Any] = field(default_factory=dict)
    url: str | None = None


class _Paginator(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def initial(self) -> PageState:
        return PageState()

    def next_page(
        self, state: PageState, response: httpx.Response, body: Any, records: list[dict]
    ) -> PageState | None:
        raise NotImplementedError


class SinglePage(_Paginator):
    """The endpoint returns everything at once."""

    type: Literal["single"] = "single"

    def next_page(self, state, response, body, records):  # type: ignore[override]
        return None


class BodyCursorPaginator(_Paginator):
    """A flag says more exist; the next page starts after the last record's id (Stripe `starting_after`)."""

    type: Literal["body_cursor"] = "body_cursor"
    cursor_param: str = "starting_after"
    cursor_record_field: str = "id"
    has_more_path: str = "has_more"

    def next_page(self, state, response, body, records):  # type: ignore[override]
        if not json_path(body, self.has_more_path) or not records:
            return None
        cursor = json_path(records[-1], self.cursor_record_field)
        return replace(state, params={**state.params, self.cursor_param: cursor})


class NextTokenPaginator(_Paginator):
    """An opaque token in the body (HubSpot `paging.next.after`, Square `cursor`) sent back as a param.

    `location` says whether the token goes back in the query string or in the JSON body (search endpoints);
    `auto` sends it where the request that produced it carries parameters: the query of a GET, the body of a
    POST (one stream whose full read is a list GET and whose incremental read is a search POST).
    """

    type: Literal["next_token"] = "next_token"
    token_path: str
    token_param: str
    location: Literal["query", "body", "auto"] = "query"

    def next_page(self, state, response, body, records):  # type: ignore[override]
        token = json_path(body, self.token_path)
        if token in (None, ""):
            return None
        location = self.location
        if location == "auto":
            location = "query" if response.request.method == "GET" else "body"
        if location == "body":
            return replace(state, body={**state.body, self.token_param: token})
        return replace(state, params={**state.params, self.token_param: token})


class OffsetPaginator(_Paginator):
    """Offset/limit or start-position/max-results, in a param or inside a query text template.

    Sets the template variable `offset`; a stream puts `{offset}` where its API wants it
    (`?offset={offset}` or QuickBooks' `STARTPOSITION {offset}`). A short page ends the stream.
    """

    type: Literal["offset"] = "offset"
    start: int = 0

    def initial(self) -> PageState:
        return PageState(variables={"offset": self.start})

    def next_page(self, state, response, body, records):  # type: ignore[override]
        page_size = int(state.variables["page_size"])
        if len(records) < page_size:
            return None
        offset = int(state.variables["offset"]) + len(records)
        return replace(state, variables={**state.variables, "offset": offset})


class PageNumberPaginator(_Paginator):
    """`page=N`; ends on a short page, or when `page_count_path` says this was the last page."""

    type: Literal["page_number"] = "page_number"
    start: int = 1
    page_count_path: str | None = None

    def initial(self) -> PageState:
        return PageState(variables={"page": self.start})

    def next_page(self, state, response, body, records):  # type: ignore[override]
        page = int(state.variables["page"])
        if self.page_count_path is not None:
            page_count = json_path(body, self.page_count_path)
            if page_count is not None and page >= int(page_count):
                return None
        if not records or len(records) < int(state.variables["page_size"]):
            return None
        return replace(state, variables={**state.variables, "page": page + 1})


class NextUrlPaginator(_Paginator):
    """The body carries the next URL (Salesforce `nextRecordsUrl`); `done_path` may say it is over."""

    type: Literal["next_url"] = "next_url"
    next_url_path: str
    done_path: str | None = None

    def next_page(self, state, response, body, records):  # type: ignore[override]
        if self.done_path is not None and json_path(body, self.done_path) is True:
            return None
        next_url = json_path(body, self.next_url_path)
        if not next_url:
            return None
        return replace(state, url=str(next_url), params={}, body={})


class LinkHeaderPaginator(_Paginator):
    """RFC 8288 `Link: <…>; rel="next"` (Shopify, GitHub)."""

    type: Literal["link_header"] = "link_header"
    rel: str = "next"

    def next_page(self, state, response, body, records):  # type: ignore[override]
        link = response.links.get(self.rel)
        if not link or not link.get("url"):
            return None
        return replace(state, url=link["url"], params={}, body={})


Paginator = Annotated[
    SinglePage
    | BodyCursorPaginator
    | NextTokenPaginator
    | OffsetPaginator
    | PageNumberPaginator
    | NextUrlPaginator
    | LinkHeaderPaginator,
    Field(discriminator="type"),
]
