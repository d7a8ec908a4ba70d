CREATE OR REPLACE FUNCTION audit_customer_change() RETURNS trigger
LANGUAGE plpgsql AS $body$
BEGIN
  INSERT INTO audit_log (table_name, row_id, changed_at) VALUES (TG_TABLE_NAME, NEW.id, now());
  RETURN NEW;
END
$body$;
CREATE TRIGGER customers_audit AFTER INSERT OR UPDATE ON customers
FOR EACH ROW EXECUTE FUNCTION audit_customer_change();
