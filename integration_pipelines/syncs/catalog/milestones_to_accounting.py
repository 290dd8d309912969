"""Scenario 5: project billing milestones reached (the in-house PM tool) → invoices in the issuing entity's books.

A project manager marks a billing milestone reached; today someone in finance raises the invoice by hand. Each
reached milestone becomes one invoice for the project's client, in the books of the client's legal entity
(core.customer_entities: the client's country matched to the legal-entities file; with the shipped group the US
company books in QuickBooks, the UK and German companies in Xero). The client is found through the project's client
email → golden customer → that books' customer in core.customer_xref; a client not yet in those books waits
(`required_columns`): the milestone is invoiced once the customer exists there (S4 creates customers of won deals).
The invoice is numbered after the milestone (`INV-M<number>`, the PM tool's own convention for invoiced
milestones), dated the day it is raised; its line sells the QuickBooks item / Xero revenue account of
`ref.books_accounts` (purposes `milestone_invoice_item`, `milestone_invoice_account`). Xero invoices are created as
drafts for the UK/DE finance team to approve, as S4's are.

The PM tool's milestones have no contract entity in the warehouse vocabulary (they are neither invoices nor
orders), so the source reads the raw tables directly; the projects/milestones are upserted by id there.

The PM tool is then told: `invoiced_milestones_to_pm_tool` marks each milestone one books' sync has invoiced (created
or linked, not one in doubt) `invoiced` with its invoice number (the PM tool's writer `mark_milestone_invoiced`), as
the finance team did by hand, so the project manager sees it and the milestone leaves the invoice syncs' source.

Duplicates: insert mode keyed by milestone, each write's idempotency key (QBO `requestid`, Xero `Idempotency-Key`;
a retry is a replay), and the milestone-derived number, which both books refuse to reuse on a sales invoice (QBO
error 6140, Xero "Invoice # must be unique"): even a lost ledger cannot bill twice. A milestone the other books'
sync has sent (or may have: in doubt) is never sent again, even when its client's entity changes afterwards.
"""

from __future__ import annotations

from ..spec import SyncSpec
from .books_accounts import with_accounts
from .sent_elsewhere import sent_by

_SYNC_NAME = {"quickbooks": "milestones_to_quickbooks", "xero": "milestones_to_xero"}
_PURPOSE = {"quickbooks": "milestone_invoice_item", "xero": "milestone_invoice_account"}

DOC_NUMBER = "'INV-M' || substr(m._pk, 4)"
"""SQL: the invoice number of milestone `m` (`ms_5008` → `INV-M5008`), the PM tool's own convention."""

_REACHED = """
    WITH books AS (
        SELECT golden_id, min(source_id) AS customer_id
        FROM core.customer_xref WHERE source_system = '{system}' GROUP BY golden_id
    )
    SELECT m._pk AS milestone_id,
           {doc_number} AS doc_number,
           m._raw->>'$.name' AS milestone_name,
           p._pk AS project_id,
           p._raw->>'$.name' AS project_name,
           upper(m._raw->>'$.currency') AS currency,
           CAST((m._raw->>'$.amount_minor')::BIGINT AS DECIMAL(18, 2))
               / CASE WHEN cur.minor_exponent = 0 THEN 1 ELSE 100 END AS amount,
           books.customer_id,
           -- the PM tool keeps no "reached at": the milestone's last change, which its move to `reached` is
           (m._raw->>'$.updated_at')::TIMESTAMPTZ AS reached_at
    FROM raw_pm_tool.billing_milestones AS m
    JOIN raw_pm_tool.projects AS p ON p._pk = m._raw->>'$.project_id'
    JOIN core.customers AS c ON lower(c.email) = lower(p._raw->>'$.client_email')
    JOIN core.customer_entities AS ce ON ce.golden_id = c.golden_id AND ce.books_system = '{system}'
    LEFT JOIN books ON books.golden_id = c.golden_id
    LEFT JOIN ref.currencies AS cur ON cur.currency = upper(m._raw->>'$.currency')
    WHERE m._raw->>'$.status' = 'reached'
      AND NOT EXISTS ({sent_elsewhere})
"""
_SOURCES = (("pm_tool", "billing_milestones"), ("pm_tool", "projects"), ("core", "customers"),
            ("core", "customer_xref"), ("core", "customer_entities"))


def _source(system: str) -> str:
    other = next(name for books, name in _SYNC_NAME.items() if books != system)
    reached = _REACHED.format(system=system, doc_number=DOC_NUMBER,
                              sent_elsewhere=sent_by([other], "sent.record_key = m._pk"))
    return with_accounts(reached, system, item_code=_PURPOSE[system])


SYNCS = (
    SyncSpec(
        name=_SYNC_NAME["quickbooks"],
        title="Billing milestones → QuickBooks invoices",
        description="Invoices each reached project billing milestone of a client booked in QuickBooks (US) to that "
                    "client there.",
        source_sql=_source("quickbooks"),
        source_assets=_SOURCES,
        key="milestone_id",
        start_column="reached_at",  # milestones reached before the switch-on were invoiced by hand
        target="quickbooks",
        mode="insert",
        create_writer="save_invoice",
        required_columns=("customer_id",),
        payload={
            "CustomerRef": {"value": "{customer_id}"},
            "DocNumber": "{doc_number}",
            "CurrencyRef": {"value": "{currency}"},
            "PrivateNote": "pm_tool milestone {milestone_id} of project {project_id}",
            "Line": [{"DetailType": "SalesItemLineDetail", "Amount": "{amount}",
                      "Description": "{project_name}: {milestone_name}",
                      "SalesItemLineDetail": {"ItemRef": {"value": "{item_code}"}, "Qty": 1,
                                              "UnitPrice": "{amount}"}}],
        },
        manual_minutes_per_record=5.0,
    ),
    SyncSpec(
        name=_SYNC_NAME["xero"],
        title="Billing milestones → Xero invoices",
        description="Creates a draft sales invoice (ACCREC) in Xero for each reached project billing milestone of a "
                    "client booked in Xero (UK, DE).",
        source_sql=_source("xero"),
        source_assets=_SOURCES,
        key="milestone_id",
        start_column="reached_at",
        target="xero",
        mode="insert",
        create_writer="create_invoices",
        required_columns=("customer_id",),
        payload={
            "Type": "ACCREC",
            "Status": "DRAFT",
            "Contact": {"ContactID": "{customer_id}"},
            "InvoiceNumber": "{doc_number}",
            "CurrencyCode": "{currency}",
            "Reference": "pm_tool milestone {milestone_id} of project {project_id}",
            "LineItems": [{"Description": "{project_name}: {milestone_name}", "Quantity": 1,
                           "UnitAmount": "{amount}", "AccountCode": "{item_code}"}],
        },
        manual_minutes_per_record=5.0,
    ),
    SyncSpec(
        name="invoiced_milestones_to_pm_tool",
        title="Invoiced milestones → PM tool",
        description="Marks each billing milestone invoiced in either books `invoiced` in the PM tool, with its "
                    "invoice number.",
        source_sql=f"""
            SELECT m._pk AS milestone_id, {DOC_NUMBER} AS invoice_number, sent.sync_name AS invoiced_by,
                   (m._raw->>'$.updated_at')::TIMESTAMPTZ AS reached_at
            FROM raw_pm_tool.billing_milestones AS m
            JOIN sync.ledger AS sent ON sent.record_key = m._pk AND sent.status IN ('synced', 'linked')
                                    AND sent.sync_name IN ({", ".join(f"'{n}'" for n in _SYNC_NAME.values())})
            -- already shown invoiced under that number (the finance team marked it by hand): nothing to tell
            WHERE NOT (m._raw->>'$.status' = 'invoiced' AND m._raw->>'$.invoice_number' IS NOT DISTINCT FROM
                       {DOC_NUMBER})
        """,
        source_assets=(("pm_tool", "billing_milestones"),),
        key="milestone_id",
        start_column="reached_at",
        target="pm_tool",
        mode="update",
        update_writer="mark_milestone_invoiced",
        external_id_column="milestone_id",
        depends_on=tuple(_SYNC_NAME.values()),
        payload={"status": "invoiced", "invoice_number": "{invoice_number}"},
        manual_minutes_per_record=1.0,
    ),
)
