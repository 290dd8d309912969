"""Scenario 13, SAP: approved purchase requests routed to SAP → SAP S/4HANA purchase orders (OData V2).

Each request routed to SAP (`purchase_requests_routes.py`) becomes one standard purchase order (type NB) through
`API_PURCHASEORDER_PROCESS_SRV` (CSRF fetch, then POST), with one item for the request's SKU (SAP's Material) and
one schedule line on the date it is needed by. OData has no idempotency key and SAP makes no purchase order
reference unique, so the order carries the request id as `CorrespncInternalReference` (Our Reference), and a
create whose answer is lost is looked up by it: one order found is linked, none is created again, several are held
in doubt for a person (docs/syncs.md).

Settings: `IP_PURCHASE_ORDERS_SAP_SUPPLIERS` maps the portal's supplier names to SAP supplier numbers
(`Northwind Supplies=17300001;…`); a request whose supplier is not mapped waits. Company code, purchasing
organisation and group, and plant default to SAP's best-practice 1010 / 1010 / 001 / 1010.
"""

from ..spec import SyncSetting, SyncSpec
from .purchase_requests_routes import ROUTE_SETTINGS, routed_requests

SETTINGS = {
    **ROUTE_SETTINGS,
    "sap_suppliers": SyncSetting(env="IP_PURCHASE_ORDERS_SAP_SUPPLIERS", description="`supplier=SAP supplier "
                                 "number` pairs separated by `;` (supplier as the procurement portal names it)"),
    "company_code": SyncSetting(env="IP_PURCHASE_ORDERS_SAP_COMPANY_CODE", default="1010",
                                description="SAP company code of the purchase orders"),
    "purchasing_organization": SyncSetting(env="IP_PURCHASE_ORDERS_SAP_PURCHASING_ORG", default="1010",
                                           description="SAP purchasing organisation"),
    "purchasing_group": SyncSetting(env="IP_PURCHASE_ORDERS_SAP_PURCHASING_GROUP", default="001",
                                    description="SAP purchasing group"),
    "plant": SyncSetting(env="IP_PURCHASE_ORDERS_SAP_PLANT", default="1010", description="SAP plant receiving"),
}

SYNC = SyncSpec(
    name="purchase_requests_to_sap",
    title="Approved purchase requests → SAP purchase orders",
    description="Creates one SAP purchase order per approved procurement-portal request routed to SAP "
    "(CorrespncInternalReference = request id, looked up after a lost answer).",
    source_sql=f"""
        WITH {routed_requests("sap")},
        suppliers AS (
            SELECT lower(trim(split_part(entry, '=', 1))) AS supplier_key, trim(split_part(entry, '=', 2)) AS number
            FROM (SELECT unnest(string_split(coalesce(
                      (SELECT value FROM _sync_settings WHERE name = 'sap_suppliers'), ''), ';')) AS entry)
            WHERE trim(entry) LIKE '%=%'
        ),
        setting AS (SELECT map_from_entries(list(struct_pack(k := name, v := value))) AS s FROM _sync_settings)
        SELECT r.request_id,
               r.approved_at,
               nullif(su.number, '') AS supplier_id,
               (SELECT s['company_code'] FROM setting) AS company_code,
               (SELECT s['purchasing_organization'] FROM setting) AS purchasing_organization,
               (SELECT s['purchasing_group'] FROM setting) AS purchasing_group,
               (SELECT s['plant'] FROM setting) AS plant,
               r.currency,
               r.sku,
               CAST(r.quantity AS VARCHAR) AS quantity,
               CAST(round(r.estimated_total_minor / nullif(r.quantity, 0) / 100, 2) AS VARCHAR) AS unit_price,
               '/Date(' || epoch_ms(CAST(left(r.approved_at, 10) AS DATE)::TIMESTAMP) || ')/' AS order_date,
               '/Date(' || epoch_ms(CAST(r.needed_by AS DATE)::TIMESTAMP) || ')/' AS delivery_date
        FROM requests AS r
        LEFT JOIN suppliers AS su ON su.supplier_key = lower(trim(r.supplier))
    """,
    source_assets=(("procurement_portal", "purchase_requests"),),
    key="request_id",
    start_column="approved_at",  # requests approved before the switch-on were ordered by hand
    target="sap",
    mode="insert",
    create_writer="create_purchase_order",
    required_columns=("supplier_id",),
    settings=SETTINGS,
    payload={
        "PurchaseOrderType": "NB",
        "CompanyCode": "{company_code}",
        "PurchasingOrganization": "{purchasing_organization}",
        "PurchasingGroup": "{purchasing_group}",
        "Supplier": "{supplier_id}",
        "DocumentCurrency": "{currency}",
        "PurchaseOrderDate": "{order_date}",
        "CorrespncInternalReference": "{request_id}",
        "to_PurchaseOrderItem": [{
            "PurchaseOrderItem": "10", "Material": "{sku}", "Plant": "{plant}", "OrderQuantity": "{quantity}",
            "PurchaseOrderQuantityUnit": "EA", "NetPriceAmount": "{unit_price}",
            "to_ScheduleLine": [{"ScheduleLineDeliveryDate": "{delivery_date}", "ScheduleLineOrderQuantity":
                                 "{quantity}"}],
        }],
    },
    manual_minutes_per_record=6.0,
)
