--
-- Name: customers; Type: TABLE; Schema: public; Owner: postgres
--

CREATE TABLE public.customers (
    id bigint NOT NULL,
    email public.email_address NOT NULL,
    full_name text NOT NULL,
    ssn text,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    search tsvector GENERATED ALWAYS AS (to_tsvector('simple'::regconfig, full_name)) STORED
);


ALTER TABLE public.customers OWNER TO postgres;
