--
-- Name: invoices_2025; Type: TABLE; Schema: billing; Owner: postgres
--

CREATE TABLE billing.invoices_2025 (
    id bigint DEFAULT nextval('billing.invoices_id_seq'::regclass) NOT NULL,
    issued_on date NOT NULL,
    amount numeric NOT NULL
);


ALTER TABLE billing.invoices_2025 OWNER TO postgres;
