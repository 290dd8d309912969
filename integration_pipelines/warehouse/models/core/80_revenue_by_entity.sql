-- key: legal_entity, month
-- Consolidated revenue per issuing legal entity and month, in the reporting currency (ref.reporting, set by
-- IP_REPORTING_CURRENCY) at the latest ref.fx_rates rate on or before each invoice date. Only the books of record
-- count (core.invoices.is_books_of_record), so a copy is never counted twice; drafts and void invoices are not
-- revenue. Invoices to a group company are eliminated: they are in intercompany_minor, not in revenue_minor.
-- An invoice whose currency has no rate counts in invoices_without_rate (the fx_rates_cover_currencies check),
-- never as zero. revenue_usd_minor repeats revenue_minor for the published report (same reporting currency).
WITH converted AS (
    SELECT i.legal_entity, date_trunc('month', timezone('UTC', i.issued_at))::DATE AS month, i.currency, i.is_intercompany,
           CAST(round(CAST(i.total_minor AS DECIMAL(38, 0)) * r.factor) AS BIGINT) AS amount_minor,
           r.factor IS NULL AS without_rate
    FROM core.invoices AS i
    ASOF LEFT JOIN ref.fx_rates AS r ON r.currency = i.currency AND timezone('UTC', i.issued_at)::DATE >= r.rate_date
    WHERE i.is_books_of_record AND coalesce(i.status, '') NOT IN ('void', 'draft')
)
SELECT c.legal_entity,
       c.month,
       any_value(rep.currency) AS reporting_currency,
       CAST(coalesce(sum(c.amount_minor) FILTER (WHERE NOT c.is_intercompany), 0) AS BIGINT) AS revenue_minor,
       count(*) FILTER (WHERE NOT c.is_intercompany) AS invoice_count,
       CAST(coalesce(sum(c.amount_minor) FILTER (WHERE c.is_intercompany), 0) AS BIGINT) AS intercompany_minor,
       count(*) FILTER (WHERE c.is_intercompany) AS intercompany_invoice_count,
       count(*) FILTER (WHERE c.without_rate) AS invoices_without_rate,
       list_sort(list_distinct(list(c.currency))) AS source_currencies,
       CAST(coalesce(sum(c.amount_minor) FILTER (WHERE NOT c.is_intercompany), 0) AS BIGINT) AS revenue_usd_minor
FROM converted AS c
CROSS JOIN ref.reporting AS rep
GROUP BY c.legal_entity, c.month
ORDER BY 1, 2
