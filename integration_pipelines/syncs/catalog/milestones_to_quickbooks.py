"""Scenario 5: project billing milestones reached (the in-house PM tool) → QuickBooks invoices.

A project manager marks a billing milestone reached; today someone in finance raises the invoice by hand. Each
reached milestone becomes one QuickBooks invoice for the project's client, found through the project's client
email → golden customer → the QuickBooks customer in core.customer_xref; a client not yet in the books waits
(`required_columns`). The invoice is numbered after the milestone (`INV-M<number>`, the PM tool's own convention
for invoiced milestones), dated the day it is raised.

The PM tool's milestones have no contract entity in the warehouse vocabulary (they are neither invoices nor
orders), so the source reads the raw tables directly; the projects/milestones are upserted by id there.

Duplicates: insert mode keyed by milestone, QBO `requestid` on every write (a retry is a replay), and the
milestone-derived DocNumber, which QBO refuses to reuse (error 6140): even a lost ledger cannot bill twice.
"""

from ..spec import SyncSpec

SYNC = SyncSpec(
    name="milestones_to_quickbooks",
    title="Billing milestones → QuickBooks invoices",
    description="Invoices each reached project billing milestone to the project's client in QuickBooks.",
    source_sql="""
        WITH qbo AS (
            SELECT golden_id, min(source_id) AS qbo_customer_id
            FROM core.customer_xref WHERE source_system = 'quickbooks' GROUP BY golden_id
        )
        SELECT m._pk AS milestone_id,
               'INV-M' || substr(m._pk, 4) AS doc_number,
               m._raw->>'$.name' AS milestone_name,
               p._pk AS project_id,
               p._raw->>'$.name' AS project_name,
               upper(m._raw->>'$.currency') AS currency,
               CAST((m._raw->>'$.amount_minor')::BIGINT AS DECIMAL(18, 2))
                   / CASE WHEN cur.minor_exponent = 0 THEN 1 ELSE 100 END AS amount,
               qbo.qbo_customer_id,
               -- the PM tool keeps no "reached at": the milestone's last change, which its move to `reached` is
               (m._raw->>'$.updated_at')::TIMESTAMPTZ AS reached_at
        FROM raw_pm_tool.billing_milestones AS m
        JOIN raw_pm_tool.projects AS p ON p._pk = m._raw->>'$.project_id'
        LEFT JOIN core.customers AS c ON lower(c.email) = lower(p._raw->>'$.client_email')
        LEFT JOIN qbo ON qbo.golden_id = c.golden_id
        LEFT JOIN ref.currencies AS cur ON cur.currency = upper(m._raw->>'$.currency')
        WHERE m._raw->>'$.status' = 'reached'
    """,
    source_assets=(("pm_tool", "billing_milestones"), ("pm_tool", "projects"), ("core", "customers"),
                   ("core", "customer_xref")),
    key="milestone_id",
    start_column="reached_at",  # milestones reached before the switch-on were invoiced by hand
    target="quickbooks",
    mode="insert",
    create_writer="save_invoice",
    required_columns=("qbo_customer_id",),
    payload={
        "CustomerRef": {"value": "{qbo_customer_id}"},
        "DocNumber": "{doc_number}",
        "CurrencyRef": {"value": "{currency}"},
        "PrivateNote": "pm_tool milestone {milestone_id} of project {project_id}",
        "Line": [{"DetailType": "SalesItemLineDetail", "Amount": "{amount}",
                  "Description": "{project_name}: {milestone_name}",
                  "SalesItemLineDetail": {"ItemRef": {"value": "1"}, "Qty": 1, "UnitPrice": "{amount}"}}],
    },
    manual_minutes_per_record=5.0,
)
