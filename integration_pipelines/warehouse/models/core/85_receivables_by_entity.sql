-- key: legal_entity
-- Open receivables per issuing legal entity, in the reporting currency at each currency's latest ref.fx_rates rate
-- on or before the build date. Open means open: an invoice of the books of record whose status is 'open' with a
-- balance (a draft, Xero DRAFT or SUBMITTED, is not a receivable; paid, voided and deleted invoices are not open).
-- Invoices to a group company are eliminated (intercompany_open_minor). A currency without a rate is counted in
-- invoices_without_rate, never as zero. open_usd_minor repeats open_minor for the published report.
WITH latest AS (
    SELECT currency, arg_max(factor, rate_date) AS factor
    FROM ref.fx_rates WHERE rate_date <= current_date GROUP BY currency
),
converted AS (
    SELECT i.legal_entity, i.is_intercompany, i.due_at,
           CAST(round(CAST(i.balance_minor AS DECIMAL(38, 0)) * r.factor) AS BIGINT) AS amount_minor,
           r.factor IS NULL AS without_rate
    FROM core.invoices AS i
    LEFT JOIN latest AS r ON r.currency = i.currency
    WHERE i.is_books_of_record AND i.status = 'open' AND i.balance_minor > 0
)
SELECT c.legal_entity,
       any_value(rep.currency) AS reporting_currency,
       CAST(coalesce(sum(c.amount_minor) FILTER (WHERE NOT c.is_intercompany), 0) AS BIGINT) AS open_minor,
       count(*) FILTER (WHERE NOT c.is_intercompany) AS open_invoice_count,
       count(*) FILTER (WHERE NOT c.is_intercompany AND c.due_at < now()) AS overdue_invoice_count,
       CAST(coalesce(sum(c.amount_minor) FILTER (WHERE c.is_intercompany), 0) AS BIGINT) AS intercompany_open_minor,
       count(*) FILTER (WHERE c.is_intercompany) AS intercompany_invoice_count,
       count(*) FILTER (WHERE c.without_rate) AS invoices_without_rate,
       CAST(coalesce(sum(c.amount_minor) FILTER (WHERE NOT c.is_intercompany), 0) AS BIGINT) AS open_usd_minor
FROM converted AS c
CROSS JOIN ref.reporting AS rep
GROUP BY c.legal_entity
ORDER BY 1
