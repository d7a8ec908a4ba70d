--
-- Name: email_address; Type: DOMAIN; Schema: public; Owner: postgres
--

CREATE DOMAIN public.email_address AS text
	CONSTRAINT email_address_check CHECK ((VALUE ~ '^[^@]+@[^@]+$'::text));


ALTER DOMAIN public.email_address OWNER TO postgres;
