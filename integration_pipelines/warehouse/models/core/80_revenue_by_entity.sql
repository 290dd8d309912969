-- key: legal_entity, month
-- Consolidated revenue per legal entity and month, in USD at the latest ref.fx_rates rate on or before each
-- invoice date. Only the books count (accounting systems), so a billing-system copy is never counted twice.
SELECT i.legal_entity,
       date_trunc('month', i.issued_at)::DATE AS month,
       'USD' AS reporting_currency,
       CAST(round(sum(i.total_minor * r.usd_per_unit)) AS BIGINT) AS revenue_usd_minor,
       count(*) AS invoice_count,
       count(*) FILTER (WHERE r.usd_per_unit IS NULL) AS invoices_without_rate,
       list_sort(list_distinct(list(i.currency))) AS source_currencies
FROM core.invoices AS i
ASOF LEFT JOIN ref.fx_rates AS r ON r.currency = i.currency AND i.issued_at::DATE >= r.rate_date
WHERE i.is_books_of_record AND coalesce(i.status, '') NOT IN ('void', 'draft')
GROUP BY ALL
ORDER BY 1, 2
