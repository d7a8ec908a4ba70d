--
-- Name: cards; Type: TABLE; Schema: billing; Owner: postgres
--

CREATE TABLE billing.cards (
    id integer NOT NULL,
    customer_id bigint NOT NULL,
    number text NOT NULL,
    expires date,
    CONSTRAINT cards_number_len CHECK (((length(number) >= 12) AND (length(number) <= 19)))
);


ALTER TABLE billing.cards OWNER TO postgres;
