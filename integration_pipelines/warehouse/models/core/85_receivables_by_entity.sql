-- key: legal_entity
-- Open receivables per legal entity in USD at each currency's latest rate, from the books.
WITH latest AS (
    SELECT currency, arg_max(usd_per_unit, rate_date) AS usd_per_unit
    FROM ref.fx_rates WHERE rate_date <= current_date GROUP BY currency
)
SELECT i.legal_entity,
       'USD' AS reporting_currency,
       CAST(round(sum(i.balance_minor * r.usd_per_unit)) AS BIGINT) AS open_usd_minor,
       count(*) AS open_invoice_count,
       count(*) FILTER (WHERE i.due_at < now()) AS overdue_invoice_count
FROM core.invoices AS i
LEFT JOIN latest AS r ON r.currency = i.currency
WHERE i.is_books_of_record AND i.balance_minor > 0
GROUP BY ALL
ORDER BY 1
