-- Closed-won deals that no invoice in the books covers: nobody billed the customer for what sales won.
-- A deal is covered when its golden customer has a books-of-record invoice for the same amount and currency.
-- A sale kept in two CRMs is one finding, under its first record (core.deals.same_deal_as).
SELECT 'missed_invoice' AS finding,
       d.source_system AS crm_system, d.source_id AS deal_id, d.name AS deal_name,
       d.amount_minor, d.currency, d.close_date, d.golden_customer_id
FROM core.deals AS d
WHERE d.is_won AND d.same_deal_as IS NULL
  AND NOT EXISTS (
      SELECT 1 FROM core.invoices AS i
      WHERE i.is_books_of_record AND i.golden_customer_id = d.golden_customer_id
        AND i.total_minor = d.amount_minor AND i.currency = d.currency)
ORDER BY d.source_system, d.source_id
