--
-- Name: cards_id_seq; Type: SEQUENCE OWNED BY; Schema: billing; Owner: postgres
--

ALTER SEQUENCE billing.cards_id_seq OWNED BY billing.cards.id;
