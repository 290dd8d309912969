"""Scenario 1: web-form submissions → CRM contacts in HubSpot and in Salesforce, one per normalized email.

Today someone copies each contact-form e-mail into the CRM. The form posts to the webhook receiver
(`/webhooks/forms/{token}`), which lands each submission once in `raw_forms.submissions` (keyed by its
submission id). Here the submissions are deduplicated by normalized email (trimmed, lowercased): the record key
is that email, and the latest non-empty value of each field wins.

A form post creates a contact or fills its empty fields; it never overwrites a field the CRM already holds. Anyone
can type anyone's e-mail into a public form (or forge a post), so a submission is not a reason to change a known
customer's name, company or phone. The warehouse's copy of the CRM (`raw_hubspot.contacts`,
`raw_salesforce.contacts`, as last read) says who is known and which of their fields are filled; the source SQL
sets every field it must not touch to NULL, and `null_fields="omit"` leaves those out of the payload (a NULL
sent to HubSpot or Salesforce would clear the field). A known contact with nothing to fill is not sent at all.

- HubSpot: upsert by email (`idProperty=email`, matched case-insensitively by HubSpot). A new email is created
  with every field; a known one gets only the fields that are empty in HubSpot (not even its e-mail: it is
  matched by the e-mail as HubSpot spells it, whose case may differ from the form's). So a retried batch is
  harmless, and a second submission with a new phone or company changes nothing once HubSpot has one.
- Salesforce: upsert by `External_Id__c` = the normalized email. A new email is created with every field
  (`LeadSource` Web, the company in `Description`); a contact this sync created gets only its empty fields. A
  contact that already exists in Salesforce under that email without our external id (entered by hand) is left
  alone entirely: it is the same person, creating it again is the duplicate this sync prevents, and filling its
  empty fields would need an update by Salesforce Id, which this sync does not do.

What remains: a contact created in the CRM after the warehouse last read the CRM's contacts (by hand, or by
another tool) is not yet known here. A form post for that email is then treated as a new contact: HubSpot's
upsert by email overwrites that contact's fields with the form's, and Salesforce gets a second contact. Contacts
this sync created itself are covered (its ledger knows them: until the next read they are not sent again). The
window is as long as the gap between reads of `hubspot/contacts` and `salesforce/contacts` (the nightly run, or
the event lane when the CRM's own webhooks report contact changes). Closing it needs a create-only write for new
emails (HubSpot's `batch/create` answers 409 for a known email) that then falls back to a fill.
"""

from ..spec import SyncSpec

#: One row per normalized email: the latest non-empty value of every field across that person's submissions.
LEADS_SQL = """
    WITH submissions AS (
        SELECT lower(trim(_raw->>'$.email')) AS email,
               nullif(trim(_raw->>'$.firstname'), '') AS firstname,
               nullif(trim(_raw->>'$.lastname'), '') AS lastname,
               nullif(trim(_raw->>'$.company'), '') AS company,
               nullif(trim(_raw->>'$.phone'), '') AS phone,
               coalesce(try_cast(_raw->>'$.submitted_at' AS TIMESTAMPTZ), _extracted_at) AS submitted_at
        FROM raw_forms.submissions
        WHERE nullif(trim(_raw->>'$.email'), '') IS NOT NULL
    )
    SELECT email,
           arg_max(firstname, submitted_at) FILTER (WHERE firstname IS NOT NULL) AS firstname,
           arg_max(lastname, submitted_at) FILTER (WHERE lastname IS NOT NULL) AS lastname,
           arg_max(company, submitted_at) FILTER (WHERE company IS NOT NULL) AS company,
           arg_max(phone, submitted_at) FILTER (WHERE phone IS NOT NULL) AS phone,
           max(submitted_at) AS last_submitted_at
    FROM submissions
    GROUP BY email
"""


def _filled(raw: str, email_path: str, fields: dict[str, str]) -> str:
    """Per normalized email known to the CRM (as last read): the e-mail as the CRM spells it, and whether each
    field is filled there."""
    flags = ",\n".join(f"bool_or(nullif(trim(_raw->>'$.{path}'), '') IS NOT NULL) AS has_{name}"
                       for name, path in fields.items())
    return f"""
        SELECT lower(trim(_raw->>'$.{email_path}')) AS email,
               min(_raw->>'$.{email_path}') AS crm_email,
               {flags}
        FROM {raw}
        WHERE nullif(trim(_raw->>'$.{email_path}'), '') IS NOT NULL
        GROUP BY 1"""


def _ours(sync_name: str) -> str:
    """Whether this sync already created the lead's contact (its ledger holds the target's id)."""
    return (f"EXISTS (SELECT 1 FROM sync.ledger AS s WHERE s.sync_name = '{sync_name}' AND s.record_key = l.email "
            "AND s.external_id IS NOT NULL)")


#: New emails: every field. Known ones: only the fields empty in HubSpot; nothing to fill → no row. Created by this
#: sync but not read back yet → no row (HubSpot's values are not known here).
HUBSPOT_SQL = f"""
    WITH crm AS ({_filled("raw_hubspot.contacts", "properties.email", {
        "firstname": "properties.firstname", "lastname": "properties.lastname",
        "company": "properties.company", "phone": "properties.phone"})}),
    filled AS (
        SELECT l.email,
               coalesce(c.crm_email, l.email) AS upsert_id,
               CASE WHEN c.email IS NULL THEN l.email END AS email_property,
               CASE WHEN c.email IS NULL OR NOT c.has_firstname THEN l.firstname END AS firstname,
               CASE WHEN c.email IS NULL OR NOT c.has_lastname THEN l.lastname END AS lastname,
               CASE WHEN c.email IS NULL OR NOT c.has_company THEN l.company END AS company,
               CASE WHEN c.email IS NULL OR NOT c.has_phone THEN l.phone END AS phone,
               l.last_submitted_at,
               c.email IS NOT NULL AS known,
               {_ours("form_leads_to_hubspot")} AS ours
        FROM ({LEADS_SQL}) AS l LEFT JOIN crm AS c ON c.email = l.email
    )
    SELECT email, upsert_id, email_property, firstname, lastname, company, phone, last_submitted_at FROM filled
    WHERE CASE WHEN known THEN coalesce(firstname, lastname, company, phone) IS NOT NULL ELSE NOT ours END
"""

#: New emails: every field. Contacts this sync created, once read back: only their empty fields. Known contacts
#: it did not create, and its own ones not read back yet: no row.
SALESFORCE_SQL = f"""
    WITH crm AS ({_filled("raw_salesforce.contacts", "Email", {
        "firstname": "FirstName", "lastname": "LastName", "phone": "Phone", "lead_source": "LeadSource"})}),
    filled AS (
        SELECT l.email,
               CASE WHEN c.email IS NULL THEN l.email END AS email_field,
               CASE WHEN c.email IS NULL OR NOT c.has_firstname THEN l.firstname END AS firstname,
               CASE WHEN c.email IS NULL OR NOT c.has_lastname THEN l.lastname END AS lastname,
               CASE WHEN c.email IS NULL OR NOT c.has_phone THEN l.phone END AS phone,
               CASE WHEN c.email IS NULL OR NOT c.has_lead_source THEN 'Web' END AS lead_source,
               -- Description is not read back from Salesforce, so only a new contact gets one
               CASE WHEN c.email IS NULL
                    THEN 'Web form lead' || coalesce(' (company: ' || l.company || ')', '') END AS description,
               l.company,
               l.last_submitted_at,
               c.email IS NOT NULL AS known,
               {_ours("form_leads_to_salesforce")} AS ours
        FROM ({LEADS_SQL}) AS l LEFT JOIN crm AS c ON c.email = l.email
    )
    SELECT email, email_field, firstname, lastname, phone, lead_source, description, company, last_submitted_at
    FROM filled
    WHERE CASE WHEN known THEN ours AND coalesce(firstname, lastname, phone, lead_source) IS NOT NULL
               ELSE NOT ours END
"""

SYNCS = (
    SyncSpec(
        name="form_leads_to_hubspot",
        title="Web-form leads → HubSpot contacts",
        description="Creates one HubSpot contact per new normalized email from the web-form submissions; for a "
        "contact HubSpot already holds, fills only its empty fields.",
        source_sql=HUBSPOT_SQL,
        source_assets=(("webhooks", "events"), ("hubspot", "contacts")),
        key="email",
        start_column="last_submitted_at",  # people who last wrote before the switch-on are not new leads
        target="hubspot",
        mode="upsert",
        create_writer="upsert_contacts",
        update_writer="upsert_contacts",
        payload={
            "idProperty": "email",
            "id": "{upsert_id}",  # a known contact's e-mail as HubSpot spells it: its case is not rewritten
            "properties": {"email": "{email_property}", "firstname": "{firstname}", "lastname": "{lastname}",
                           "company": "{company}", "phone": "{phone}"},
        },
        null_fields="omit",  # a field the CRM already holds is NULL in the source: left out, never cleared
        manual_minutes_per_record=3.0,
    ),
    SyncSpec(
        name="form_leads_to_salesforce",
        title="Web-form leads → Salesforce contacts",
        description="Creates one Salesforce contact per new normalized email (upsert by External_Id__c) and fills "
        "only the empty fields of the ones it created; people already in Salesforce are not created again.",
        source_sql=SALESFORCE_SQL,
        source_assets=(("webhooks", "events"), ("salesforce", "contacts")),
        key="email",
        start_column="last_submitted_at",  # people who last wrote before the switch-on are not new leads
        target="salesforce",
        mode="upsert",
        create_writer="upsert_contacts",
        update_writer="upsert_contacts",
        payload={
            "attributes": {"type": "Contact"},
            "External_Id__c": "{email}",
            "Email": "{email_field}",
            "FirstName": "{firstname}",
            "LastName": "{lastname}",
            "Phone": "{phone}",
            "LeadSource": "{lead_source}",
            "Description": "{description}",
        },
        null_fields="omit",  # a field Salesforce already holds is NULL in the source: left out, never cleared
        manual_minutes_per_record=3.0,
    ),
)
