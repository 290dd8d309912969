"""Scenario 4: closed-won deals → customers and invoices in the issuing entity's books (QuickBooks or Xero).

When a deal is won, finance re-keys the customer and the invoice into the books. Each deal is invoiced once, in
the books of the legal entity that issues it: core.deals.legal_entity (the customer's country matched to the
legal-entities file, else the group's first entity; see warehouse/models/core/30_deals.sql) and its
books_system (that entity's books of record). With the shipped group the US company books in QuickBooks, the UK
and German companies in Xero. Per accounting system this is two syncs: the first creates the accounting customer
for a won deal's golden customer who has none there yet; the second (`depends_on` the first) invoices the deal
amount to that customer, taking the customer's id from core.customer_xref (customers already in the books) or
else from the first sync's `sync.ledger` external id. Invoices wait (`required_columns`) until the customer
exists. Only deals linked to a contact can be invoiced: Salesforce opportunities carry `ContactId`; a HubSpot
deal's contact is its association, read by the `hubspot/deal_contacts` stream (staging/hubspot__deals.sql); a
deal with no contact waits outside the model.

Dates: the invoice is dated the day the deal was won: its close date, or today when the CRM still holds a close
date in the future (the expected date a rep left); never a future date. The due date adds the payment term
(`IP_INVOICE_PAYMENT_TERMS_DAYS`, default 30). The QuickBooks item and the Xero revenue account come from
`ref.books_accounts` (seeds/books_accounts.csv, purposes `won_deal_invoice_item` and `won_deal_invoice_account`),
or from the CSV file named by `IP_INVOICE_ITEMS_FILE` (same columns), which overrides those two rows.

Duplicates: both syncs are `insert` mode keyed by golden customer / deal, so the ledger sends each record
once; a retried write carries the same idempotency key (QuickBooks `requestid`, Xero `Idempotency-Key`), which
the target replays instead of creating a second record. Both targets also refuse a second customer with the same
display name (QBO 6240, Xero's unique contact name), so a customer keyed into the books by hand since the last
extract fails visibly in `sync.errors` rather than being duplicated. A won deal kept in both CRMs (the same
golden customer, currency, amount and close date; see core/30_deals.sql) is one sale, invoiced once from its first
record.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from ..spec import SyncSetting, SyncSpec
from .sent_elsewhere import sent_by

ITEMS_FILE_ENV = "IP_INVOICE_ITEMS_FILE"
PAYMENT_TERMS_ENV = "IP_INVOICE_PAYMENT_TERMS_DAYS"


class _BooksAccountOverride(SyncSetting):
    """The `account_code` of one (books_system, purpose) row of the CSV file named by the variable, or "" when the
    variable is unset (the source SQL then reads ref.books_accounts, the shipped seed). A file that cannot be read
    or lacks the row stops the plan with a message naming the file."""

    books_system: str
    purpose: str

    def value(self) -> str:
        name = os.environ.get(self.env, "").strip()
        if not name:
            return ""
        path = Path(name).expanduser()
        try:
            with path.open(newline="") as handle:
                rows = list(csv.DictReader(handle))
        except OSError as exc:
            raise ValueError(f"{self.env}={name}: cannot read the file ({exc})") from exc
        for row in rows:
            if (row.get("books_system") or "").strip().lower() == self.books_system \
                    and (row.get("purpose") or "").strip() == self.purpose:
                code = (row.get("account_code") or "").strip()
                if code:
                    return code
        raise ValueError(f"{self.env}={name}: no row books_system={self.books_system}, purpose={self.purpose} "
                         "with an account_code (columns: books_system,purpose,account_code,description)")


def _settings(system: str) -> dict[str, SyncSetting]:
    purpose = "won_deal_invoice_item" if system == "quickbooks" else "won_deal_invoice_account"
    return {
        "payment_terms_days": SyncSetting(
            env=PAYMENT_TERMS_ENV, default="30",
            description="days from the invoice date to its due date (a whole number)"),
        "invoice_item": _BooksAccountOverride(
            env=ITEMS_FILE_ENV, books_system=system, purpose=purpose,
            description=f"a CSV like seeds/books_accounts.csv whose `{system},{purpose}` row replaces the shipped "
            f"one ({'the QuickBooks item id' if system == 'quickbooks' else 'the Xero revenue account code'})"),
    }

# A deal is invoiced once, whatever changes afterwards:
# - a deal the other books' invoice sync has sent (or may have: in doubt) stays there, even when its entity changes
#   afterwards (a corrected country, another books of record): it is never invoiced a second time in other books;
# - a won deal recorded in two CRMs is one sale (core.deals.same_deal_as names the first record of it): only the
#   first record is invoiced, and not when another CRM's record of the same sale was invoiced already (in either
#   books), e.g. because the second CRM was read first or its record turned out to be the older one.
_INVOICE_SYNC = {"quickbooks": "won_deals_to_quickbooks_invoices", "xero": "won_deals_to_xero_invoices"}


def _elsewhere(system: str) -> str:
    other = next(name for books, name in _INVOICE_SYNC.items() if books != system)
    this_deal = "d.source_system || ':' || d.source_id"
    return (f"{sent_by([other], f'sent.record_key = {this_deal}')} UNION ALL "
            + sent_by(_INVOICE_SYNC.values(), "sent.record_key IN (SELECT twin.source_system || ':' || twin.source_id "
                      f"FROM core.deals AS twin WHERE twin.same_deal_as = {this_deal})"))


_WON_CUSTOMERS = """
    WITH won AS (
        SELECT golden_customer_id, min(currency) AS currency,
               -- the latest day one of the customer's deals was won (see _WON_DEALS): its start date
               max(least(close_date, current_date)) AS last_won_on
        FROM core.deals AS d
        WHERE is_won AND golden_customer_id IS NOT NULL AND books_system = '{system}' AND same_deal_as IS NULL
          AND NOT EXISTS ({invoiced_elsewhere})
        GROUP BY golden_customer_id
    )
    SELECT c.golden_id, c.full_name, c.email, c.phone_e164 AS phone, c.company_name, won.currency, won.last_won_on
    FROM won
    JOIN core.customers AS c ON c.golden_id = won.golden_customer_id
    WHERE NOT EXISTS (SELECT 1 FROM core.customer_xref AS x
                      WHERE x.golden_id = c.golden_id AND x.source_system = '{system}')
"""

_WON_DEALS = """
    WITH won AS (
        -- the day the deal was won: its close date, or today while the CRM holds a future (expected) close date
        SELECT d.*, least(d.close_date, current_date) AS won_on
        FROM core.deals AS d
        WHERE d.is_won AND d.golden_customer_id IS NOT NULL AND d.books_system = '{system}'
          AND d.same_deal_as IS NULL AND NOT EXISTS ({invoiced_elsewhere})
    )
    SELECT d.source_system || ':' || d.source_id AS deal_key,
           d.source_system AS crm,
           d.source_id AS deal_id,
           d.name AS deal_name,
           d.currency,
           CAST(d.amount_minor AS DECIMAL(18, 2)) / CASE WHEN cur.minor_exponent = 0 THEN 1 ELSE 100 END AS amount,
           strftime(d.won_on, '%Y-%m-%d') AS invoice_date,
           strftime(d.won_on + CAST((SELECT value FROM _sync_settings WHERE name = 'payment_terms_days') AS INTEGER),
                    '%Y-%m-%d') AS due_date,
           coalesce(nullif((SELECT value FROM _sync_settings WHERE name = 'invoice_item'), ''),
                    (SELECT CAST(min(account_code) AS VARCHAR) FROM ref.books_accounts
                     WHERE books_system = '{system}' AND purpose = '{purpose}')) AS item_code,
           coalesce(x.source_id, l.external_id) AS customer_id,
           CAST(d.won_on AS DATE) AS closed_on
    FROM won AS d
    LEFT JOIN ref.currencies AS cur ON cur.currency = d.currency
    LEFT JOIN (SELECT golden_id, min(source_id) AS source_id FROM core.customer_xref
               WHERE source_system = '{system}' GROUP BY golden_id) AS x ON x.golden_id = d.golden_customer_id
    LEFT JOIN sync.ledger AS l ON l.sync_name = '{customer_sync}' AND l.record_key = d.golden_customer_id
                                AND l.status = 'synced'
"""

_SOURCES = (("core", "deals"), ("core", "customers"), ("core", "customer_xref"))
_ACCOUNTS = ("won_deal_invoice_item", "won_deal_invoice_account")

SYNCS = (
    SyncSpec(
        name="won_deal_customers_to_quickbooks",
        title="Won deals → QuickBooks customers",
        description="Creates the QuickBooks customer for each closed-won deal booked in QuickBooks whose customer is "
                    "not yet there.",
        source_sql=_WON_CUSTOMERS.format(system="quickbooks", invoiced_elsewhere=_elsewhere("quickbooks")),
        source_assets=_SOURCES,
        key="golden_id",
        start_column="last_won_on",  # no customer for deals won before the switch-on (their invoices are not sent)
        target="quickbooks",
        mode="insert",
        create_writer="save_customer",
        payload={
            "DisplayName": "{full_name}",
            "CompanyName": "{company_name}",
            "PrimaryEmailAddr": {"Address": "{email}"},
            "PrimaryPhone": {"FreeFormNumber": "{phone}"},
            "CurrencyRef": {"value": "{currency}"},
            "Notes": "Created from a won deal (golden customer {golden_id})",
        },
        manual_minutes_per_record=3.0,
    ),
    SyncSpec(
        name="won_deals_to_quickbooks_invoices",
        title="Won deals → QuickBooks invoices",
        description="Invoices each closed-won deal of an entity booked in QuickBooks (US) to the deal's customer "
                    "there.",
        source_sql=_WON_DEALS.format(system="quickbooks", customer_sync="won_deal_customers_to_quickbooks",
                                     purpose=_ACCOUNTS[0], invoiced_elsewhere=_elsewhere("quickbooks")),
        source_assets=_SOURCES,
        key="deal_key",
        start_column="closed_on",  # deals won before the switch-on were invoiced by hand
        target="quickbooks",
        mode="insert",
        create_writer="save_invoice",
        depends_on=("won_deal_customers_to_quickbooks",),
        required_columns=("customer_id",),
        settings=_settings("quickbooks"),
        payload={
            "CustomerRef": {"value": "{customer_id}"},
            "TxnDate": "{invoice_date}",
            "DueDate": "{due_date}",
            "CurrencyRef": {"value": "{currency}"},
            "PrivateNote": "{crm} opportunity {deal_id}",
            "Line": [{"DetailType": "SalesItemLineDetail", "Amount": "{amount}", "Description": "{deal_name}",
                      "SalesItemLineDetail": {"ItemRef": {"value": "{item_code}"}, "Qty": 1, "UnitPrice": "{amount}"}}],
        },
        manual_minutes_per_record=5.0,
    ),
    SyncSpec(
        name="won_deal_customers_to_xero",
        title="Won deals → Xero contacts",
        description="Creates the Xero contact for each closed-won deal booked in Xero whose customer is not yet there.",
        source_sql=_WON_CUSTOMERS.format(system="xero", invoiced_elsewhere=_elsewhere("xero")),
        source_assets=_SOURCES,
        key="golden_id",
        start_column="last_won_on",  # no customer for deals won before the switch-on (their invoices are not sent)
        target="xero",
        mode="insert",
        create_writer="save_contacts",
        payload={
            "Name": "{full_name}",
            "EmailAddress": "{email}",
            "IsCustomer": True,
            "DefaultCurrency": "{currency}",
            "Phones": [{"PhoneType": "DEFAULT", "PhoneNumber": "{phone}"}],
        },
        manual_minutes_per_record=3.0,
    ),
    SyncSpec(
        name="won_deals_to_xero_invoices",
        title="Won deals → Xero invoices",
        description="Creates a draft sales invoice (ACCREC) in Xero for each closed-won deal of an entity booked in "
                    "Xero (UK, DE).",
        source_sql=_WON_DEALS.format(system="xero", customer_sync="won_deal_customers_to_xero", purpose=_ACCOUNTS[1],
                                     invoiced_elsewhere=_elsewhere("xero")),
        source_assets=_SOURCES,
        key="deal_key",
        start_column="closed_on",  # deals won before the switch-on were invoiced by hand
        target="xero",
        mode="insert",
        create_writer="create_invoices",
        depends_on=("won_deal_customers_to_xero",),
        required_columns=("customer_id",),
        settings=_settings("xero"),
        payload={
            "Type": "ACCREC",
            "Status": "DRAFT",
            "Contact": {"ContactID": "{customer_id}"},
            "Date": "{invoice_date}",
            "DueDate": "{due_date}",
            "CurrencyCode": "{currency}",
            "Reference": "{crm} opportunity {deal_id}",
            "LineItems": [{"Description": "{deal_name}", "Quantity": 1, "UnitAmount": "{amount}",
                           "AccountCode": "{item_code}"}],
        },
        manual_minutes_per_record=5.0,
    ),
)
