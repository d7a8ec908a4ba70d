--
-- Name: invoices; Type: TABLE; Schema: billing; Owner: postgres
--

CREATE TABLE billing.invoices (
    id bigint NOT NULL,
    issued_on date NOT NULL,
    amount numeric NOT NULL
)
PARTITION BY RANGE (issued_on);


ALTER TABLE billing.invoices OWNER TO postgres;
