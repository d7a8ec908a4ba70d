--
-- Name: customer_balance(bigint); Type: FUNCTION; Schema: billing; Owner: postgres
--

CREATE FUNCTION billing.customer_balance(p_customer bigint) RETURNS numeric
    LANGUAGE sql STABLE
    AS $$ SELECT coalesce(sum(total), 0) FROM public.orders WHERE customer_id = p_customer $$;


ALTER FUNCTION billing.customer_balance(p_customer bigint) OWNER TO postgres;
