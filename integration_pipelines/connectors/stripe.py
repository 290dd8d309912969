"""Stripe (payments). REST, form-encoded writes, `Idempotency-Key`, newest-first lists with
`starting_after`/`has_more`, and `created[gte]`/`created[lt]` windows, hence daily partitions."""

from __future__ import annotations

from .pagination import BodyCursorPaginator
from .spec import BearerAuthSpec, EnvValue, RequestTemplate, Stream, System


def _list(name: str, path: str, description: str) -> Stream:
    return Stream(
        name=name,
        description=description,
        request=RequestTemplate(
            path=path,
            params={"limit": "{page_size}", "created[gte]": "{window_start_unix}", "created[lt]": "{window_end_unix}"},
        ),
        records_path="data",
        envelope_path="data",
        primary_key="id",
        cursor_field="created",
        cursor_format="unix",
        partitioned="daily",
        paginator=BodyCursorPaginator(cursor_param="starting_after", has_more_path="has_more"),
        page_size=100,
    )


SYSTEM = System(
    name="stripe",
    title="Stripe",
    category="payments",
    base_url="https://api.stripe.com",
    docs_url="https://docs.stripe.com/api",
    values={
        "api_key": EnvValue(
            env="STRIPE_API_KEY",
            sandbox="sk_test_FAKE_sandbox_key_integration_pipelines",
            description="a secret or restricted key (Dashboard → Developers → API keys)",
        )
    },
    auth=BearerAuthSpec(token="api_key"),
    headers={"Stripe-Version": "2025-09-30.clover"},
    requests_per_second=25.0,
    burst=25,
    extra_retry_statuses=(409,),
    error_message_paths=("error.message",),
    streams=(
        _list("customers", "/v1/customers", "Customers"),
        _list("charges", "/v1/charges", "Charges (card payments)"),
        _list("invoices", "/v1/invoices", "Invoices billed through Stripe"),
    ),
)
