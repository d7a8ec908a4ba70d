DROP FUNCTION IF EXISTS billing.customer_balance(p_customer bigint);
