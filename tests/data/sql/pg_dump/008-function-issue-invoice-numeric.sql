--
-- Name: issue_invoice(numeric); Type: FUNCTION; Schema: billing; Owner: postgres
--

CREATE FUNCTION billing.issue_invoice(p_amount numeric) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'billing', 'pg_temp'
    AS $$
DECLARE
  v_id bigint;
BEGIN
  INSERT INTO billing.invoices (issued_on, amount) VALUES (current_date, p_amount) RETURNING id INTO v_id;
  RETURN v_id;
END
$$;


ALTER FUNCTION billing.issue_invoice(p_amount numeric) OWNER TO postgres;
