"""Scenario 1: web-form submissions → CRM contacts in HubSpot and in Salesforce, one per normalized email.

Today someone copies each contact-form e-mail into the CRM. The form posts to the webhook receiver
(`/webhooks/forms/{token}`), which lands each submission once in `raw_forms.submissions` (keyed by its
submission id). Here the submissions are deduplicated by normalized email (trimmed, lowercased): the record key
is that email, the latest non-empty value of each field wins, and a person who fills the form three times is
one contact, sent again only when what they typed changes.

- HubSpot: upsert by email (`idProperty=email`, matched case-insensitively by HubSpot), so an existing contact
  is updated, never duplicated, and a retried batch is harmless.
- Salesforce: upsert by `External_Id__c` = the normalized email, so a retried collection updates the contact it
  created. A contact that already exists in Salesforce under that email (entered by hand, so without our
  external id) is left alone: it is the same person, and creating it again is the duplicate this sync prevents.
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

SYNCS = (
    SyncSpec(
        name="form_leads_to_hubspot",
        title="Web-form leads → HubSpot contacts",
        description="Creates or updates one HubSpot contact per normalized email from the web-form submissions.",
        source_sql=LEADS_SQL,
        source_assets=(("webhooks", "events"),),
        key="email",
        start_column="last_submitted_at",  # people who last wrote before the switch-on are not new leads
        target="hubspot",
        mode="upsert",
        create_writer="upsert_contacts",
        update_writer="upsert_contacts",
        payload={
            "idProperty": "email",
            "id": "{email}",
            "properties": {"email": "{email}", "firstname": "{firstname}", "lastname": "{lastname}",
                           "company": "{company}", "phone": "{phone}"},
        },
        manual_minutes_per_record=3.0,
    ),
    SyncSpec(
        name="form_leads_to_salesforce",
        title="Web-form leads → Salesforce contacts",
        description="Creates one Salesforce contact per new normalized email (upsert by External_Id__c); people "
        "already in Salesforce are not created again.",
        source_sql=f"""
            SELECT l.* FROM ({LEADS_SQL}) AS l
            WHERE NOT EXISTS (SELECT 1 FROM raw_salesforce.contacts AS c
                              WHERE lower(trim(c._raw->>'$.Email')) = l.email)
               OR EXISTS (SELECT 1 FROM sync.ledger AS s
                          WHERE s.sync_name = 'form_leads_to_salesforce' AND s.record_key = l.email
                            AND s.external_id IS NOT NULL)
        """,
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
            "Email": "{email}",
            "FirstName": "{firstname}",
            "LastName": "{lastname}",
            "Phone": "{phone}",
            "LeadSource": "Web",
            "Description": "Web form lead (company: {company})",
        },
        manual_minutes_per_record=3.0,
    ),
)
