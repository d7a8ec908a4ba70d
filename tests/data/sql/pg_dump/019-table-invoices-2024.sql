--
-- Name: invoices_2024; Type: TABLE; Schema: billing; Owner: postgres
--

CREATE TABLE billing.invoices_2024 (
    id bigint DEFAULT nextval('billing.invoices_id_seq'::regclass) NOT NULL,
    issued_on date NOT NULL,
    amount numeric NOT NULL
);


ALTER TABLE billing.invoices_2024 OWNER TO postgres;
