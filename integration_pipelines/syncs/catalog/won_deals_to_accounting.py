"""Scenario 4: closed-won opportunities → customers and invoices in accounting (QuickBooks and Xero).

When a deal is won, finance re-keys the customer and the invoice into the books. Per accounting system this is
two syncs: the first creates the accounting customer for a won deal's golden customer who has none there yet;
the second (`depends_on` the first) invoices the deal amount to that customer, taking the customer's id from
core.customer_xref (customers already in the books) or else from the first sync's `sync.ledger` external id.
Invoices wait (`required_columns`) until the customer exists. Only deals linked to a contact can be invoiced:
Salesforce opportunities carry `ContactId`; HubSpot deals carry no contact, so they never reach the model.

Duplicates: both syncs are `insert` mode keyed by golden customer / deal, so the ledger sends each record
once; a retried write carries the same idempotency key (QuickBooks `requestid`, Xero `Idempotency-Key`), which
the target replays instead of creating a second record. Both targets also refuse a second customer with the same
display name (QBO 6240, Xero's unique contact name), so a customer keyed into the books by hand since the last
extract fails visibly in `sync.errors` rather than being duplicated.
"""

from ..spec import SyncSpec

_WON_CUSTOMERS = """
    WITH won AS (
        SELECT golden_customer_id, min(currency) AS currency
        FROM core.deals
        WHERE is_won AND golden_customer_id IS NOT NULL
        GROUP BY golden_customer_id
    )
    SELECT c.golden_id, c.full_name, c.email, c.phone_e164 AS phone, c.company_name, won.currency
    FROM won
    JOIN core.customers AS c ON c.golden_id = won.golden_customer_id
    WHERE NOT EXISTS (SELECT 1 FROM core.customer_xref AS x
                      WHERE x.golden_id = c.golden_id AND x.source_system = '{system}')
"""

_WON_DEALS = """
    SELECT d.source_system || ':' || d.source_id AS deal_key,
           d.source_system AS crm,
           d.source_id AS deal_id,
           d.name AS deal_name,
           d.currency,
           CAST(d.amount_minor AS DECIMAL(18, 2)) / CASE WHEN cur.minor_exponent = 0 THEN 1 ELSE 100 END AS amount,
           strftime(d.close_date, '%Y-%m-%d') AS close_date,
           coalesce(x.source_id, l.external_id) AS customer_id,
           CAST(d.close_date AS DATE) AS closed_on
    FROM core.deals AS d
    LEFT JOIN ref.currencies AS cur ON cur.currency = d.currency
    LEFT JOIN (SELECT golden_id, min(source_id) AS source_id FROM core.customer_xref
               WHERE source_system = '{system}' GROUP BY golden_id) AS x ON x.golden_id = d.golden_customer_id
    LEFT JOIN sync.ledger AS l ON l.sync_name = '{customer_sync}' AND l.record_key = d.golden_customer_id
                                AND l.status = 'synced'
    WHERE d.is_won AND d.golden_customer_id IS NOT NULL
"""

_SOURCES = (("core", "deals"), ("core", "customers"), ("core", "customer_xref"))

SYNCS = (
    SyncSpec(
        name="won_deal_customers_to_quickbooks",
        title="Won deals → QuickBooks customers",
        description="Creates the QuickBooks customer for each closed-won deal's customer not yet in the books.",
        source_sql=_WON_CUSTOMERS.format(system="quickbooks"),
        source_assets=_SOURCES,
        key="golden_id",
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
        description="Invoices each closed-won deal's amount to the deal's customer in QuickBooks.",
        source_sql=_WON_DEALS.format(system="quickbooks", customer_sync="won_deal_customers_to_quickbooks"),
        source_assets=_SOURCES,
        key="deal_key",
        start_column="closed_on",  # deals won before the switch-on were invoiced by hand
        target="quickbooks",
        mode="insert",
        create_writer="save_invoice",
        depends_on=("won_deal_customers_to_quickbooks",),
        required_columns=("customer_id",),
        payload={
            "CustomerRef": {"value": "{customer_id}"},
            "TxnDate": "{close_date}",
            "CurrencyRef": {"value": "{currency}"},
            "PrivateNote": "{crm} opportunity {deal_id}",
            "Line": [{"DetailType": "SalesItemLineDetail", "Amount": "{amount}", "Description": "{deal_name}",
                      "SalesItemLineDetail": {"ItemRef": {"value": "1"}, "Qty": 1, "UnitPrice": "{amount}"}}],
        },
        manual_minutes_per_record=5.0,
    ),
    SyncSpec(
        name="won_deal_customers_to_xero",
        title="Won deals → Xero contacts",
        description="Creates the Xero contact for each closed-won deal's customer not yet in the books.",
        source_sql=_WON_CUSTOMERS.format(system="xero"),
        source_assets=_SOURCES,
        key="golden_id",
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
        description="Creates a draft sales invoice (ACCREC) in Xero for each closed-won deal's amount.",
        source_sql=_WON_DEALS.format(system="xero", customer_sync="won_deal_customers_to_xero"),
        source_assets=_SOURCES,
        key="deal_key",
        start_column="closed_on",  # deals won before the switch-on were invoiced by hand
        target="xero",
        mode="insert",
        create_writer="create_invoices",
        depends_on=("won_deal_customers_to_xero",),
        required_columns=("customer_id",),
        payload={
            "Type": "ACCREC",
            "Status": "DRAFT",
            "Contact": {"ContactID": "{customer_id}"},
            "Date": "{close_date}",
            "CurrencyCode": "{currency}",
            "Reference": "{crm} opportunity {deal_id}",
            "LineItems": [{"Description": "{deal_name}", "Quantity": 1, "UnitAmount": "{amount}",
                           "AccountCode": "200"}],
        },
        manual_minutes_per_record=5.0,
    ),
)
