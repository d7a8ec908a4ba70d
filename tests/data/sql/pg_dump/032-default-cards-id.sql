--
-- Name: cards id; Type: DEFAULT; Schema: billing; Owner: postgres
--

ALTER TABLE ONLY billing.cards ALTER COLUMN id SET DEFAULT nextval('billing.cards_id_seq'::regclass);
