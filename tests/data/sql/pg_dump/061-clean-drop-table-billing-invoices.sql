DROP TABLE IF EXISTS billing.invoices;
