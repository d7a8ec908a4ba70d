--
-- Name: COLUMN customers.ssn; Type: COMMENT; Schema: public; Owner: postgres
--

COMMENT ON COLUMN public.customers.ssn IS 'PII: national id';
