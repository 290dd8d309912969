"""Scenario 8: successful payments → fulfillment requests in the ERP (Odoo), exactly once per payment.

Today someone watches the processor dashboards (Stripe, Square) and keys an order into Odoo for each paid
charge so the warehouse ships it. Each succeeded processor payment becomes one Odoo quotation (`sale.order`,
state draft) for the payer's Odoo contact (matched through the golden customer), dated when the money moved,
with the payment, amount and invoice in the note; the warehouse team confirms and fulfils it in Odoo.

Exactly once without an idempotency key (Odoo's external API has none), as scenario 13 does it: the order's
`client_order_ref` (Customer Reference) is the payment key (`stripe:ch_...`, `square:...`), unique in Odoo (the
constraint a database synced this way carries), so a create sent twice is refused with a ValidationError instead
of stored twice; and a payment whose order already exists in Odoo is never created again even if our ledger lost
it: the source reads the extracted Odoo sales orders by `client_order_ref` and hands the found id to the engine
as the external id (search-before-create, done in the warehouse). Payers without an Odoo contact wait
(`required_columns`) until the contact exists.
"""

from ..spec import SyncSpec

SYNC = SyncSpec(
    name="payments_to_odoo_fulfillment",
    title="Successful payments → Odoo fulfillment orders",
    description="Creates one draft Odoo sales order per succeeded card payment (client_order_ref = payment key).",
    source_sql="""
        WITH odoo_contacts AS (
            SELECT x.golden_id, min(CAST(x.source_id AS BIGINT)) AS partner_id
            FROM core.customer_xref AS x
            JOIN raw_odoo.partners AS rp ON rp._pk = x.source_id
            WHERE x.source_system = 'odoo' AND (rp._raw->>'$.active')::BOOLEAN
            GROUP BY x.golden_id
        ),
        existing AS (
            SELECT _raw->>'$.client_order_ref' AS client_order_ref, min(CAST(_pk AS BIGINT)) AS odoo_order_id
            FROM raw_odoo.sale_orders
            GROUP BY 1
        )
        SELECT p.source_system || ':' || p.source_id AS payment_key,
               oc.partner_id,
               strftime(p.paid_at AT TIME ZONE 'UTC', '%Y-%m-%d %H:%M:%S') AS date_order,
               'Fulfil: paid ' || format('{:.2f}', CAST(p.amount_minor AS DOUBLE)
                   / CASE WHEN c.minor_exponent = 0 THEN 1 ELSE 100 END) || ' ' || p.currency
                   || ' by ' || p.source_system || ' payment ' || p.source_id
                   || coalesce(' for invoice ' || p.invoice_number, '') AS note,
               e.odoo_order_id,
               p.paid_at
        FROM core.payments AS p
        LEFT JOIN ref.currencies AS c ON c.currency = p.currency
        LEFT JOIN odoo_contacts AS oc ON oc.golden_id = p.golden_customer_id
        LEFT JOIN existing AS e ON e.client_order_ref = p.source_system || ':' || p.source_id
        WHERE p.kind = 'processor' AND p.status = 'succeeded'
    """,
    source_assets=(("core", "payments"), ("core", "customer_xref"), ("odoo", "partners"), ("odoo", "sale_orders")),
    key="payment_key",
    start_column="paid_at",  # no fulfilment order for a payment made before the sync was switched on
    target="odoo",
    mode="insert",
    create_writer="create_sale_order",
    external_id_column="odoo_order_id",
    required_columns=("partner_id",),
    payload={
        "jsonrpc": "2.0",
        "method": "call",
        "id": 1,
        "params": {
            "service": "object",
            "method": "execute_kw",
            "args": ["{db}", "{uid}", "{api_key}", "sale.order", "create", [{
                "partner_id": "{partner_id}",
                "client_order_ref": "{payment_key}",
                "date_order": "{date_order}",
                "note": "{note}",
            }], {}],
        },
    },
    manual_minutes_per_record=5.0,
)
