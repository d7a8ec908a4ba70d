DROP SEQUENCE IF EXISTS billing.invoice_number_seq;
