"""Stripe (payments). REST, form-encoded writes, `Idempotency-Key`, newest-first lists with
`starting_after`/`has_more`, and `created[gte]`/`created[lt]` windows, hence daily partitions."""

from __future__ import annotations

from .pagination import BodyCursorPaginator
from .spec import BearerAuthSpec, EnvValue, RequestTemplate, Scopes, SnapshotFeed, Stream, System

# Stripe keeps events for 30 days; a nightly read of the feed sees every change to every object in that time,
# whatever day the object was created on. A few minutes of overlap cover events stamped just before the last read.
EVENTS_LOOKBACK_SECONDS = 600


def _list(name: str, path: str, description: str, **params: str) -> Stream:
    return Stream(
        name=name,
        description=description,
        request=RequestTemplate(
            path=path,
            params={"limit": "{page_size}", "created[gte]": "{window_start_unix}", "created[lt]": "{window_end_unix}",
                    **params},
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
    scopes=Scopes(
        read=("rak_customer_read", "rak_charge_read", "rak_invoice_read", "rak_refund_read", "rak_dispute_read",
              "rak_event_read", "rak_balance_read", "rak_subscription_read"),
        note="A restricted key (`rk_live_...`, Dashboard → Developers → API keys → Create restricted key) with Read "
        "on Customers, Charges, Refunds, Invoices, Disputes, Events, Balance (balance transactions: the "
        "processing fees) and Subscriptions; no sync writes to Stripe, so no write key is needed.",
    ),
    streams=(
        _list("customers", "/v1/customers", "Customers"),
        _list("charges", "/v1/charges", "Charges (card payments)"),
        _list("invoices", "/v1/invoices", "Invoices billed through Stripe"),
        _list("refunds", "/v1/refunds", "Refunds (each partial or repeated refund of a charge)"),
        _list("disputes", "/v1/disputes", "Disputes (chargebacks) opened by cardholders' banks"),
        # Stripe puts no fee on a charge: it is on the charge's balance transaction, created with the charge (same
        # `created`, so the same daily window) and never changed afterwards, hence no change feed is needed.
        _list("balance_transactions", "/v1/balance_transactions",
              "Balance transactions: each charge's processing fee and net, each refund's movement"),
        # A subscription's status changes long after its `created` day (a trial ends, a renewal fails): those changes
        # reach the stream through the change feed below (`customer.subscription.*` events) and the webhooks. The
        # list leaves canceled subscriptions out unless asked for every status.
        _list("subscriptions", "/v1/subscriptions",
              "Subscriptions in every status (trialing, active, past_due, canceled ...), with their items' prices "
              "and billing periods", status="all"),
        Stream(
            name="events",
            description="The Events API: every change to a charge, customer, invoice or subscription (refunds, "
            "disputes, a subscription's new status, edits to old records), applied to those streams by version",
            request=RequestTemplate(path="/v1/events", params={"limit": "{page_size}"}),
            incremental_request=RequestTemplate(
                path="/v1/events", params={"limit": "{page_size}", "created[gte]": "{cursor_unix}"}),
            records_path="data",
            envelope_path="data",
            primary_key="id",
            cursor_field="created",
            cursor_format="unix",
            lookback_seconds=EVENTS_LOOKBACK_SECONDS,
            paginator=BodyCursorPaginator(cursor_param="starting_after", has_more_path="has_more"),
            page_size=100,
            snapshots=SnapshotFeed(object_path="data.object", type_path="data.object.object",
                                   streams={"charge": "charges", "customer": "customers", "invoice": "invoices",
                                            "refund": "refunds", "dispute": "disputes",
                                            "subscription": "subscriptions"},
                                   version_field="created", version_format="unix", newest_first=True),
        ),
    ),
)
