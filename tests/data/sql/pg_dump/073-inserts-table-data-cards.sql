--
-- Data for Name: cards; Type: TABLE DATA; Schema: billing; Owner: postgres
--

INSERT INTO billing.cards VALUES (1, 1, '4111111111111111', '2027-01-31');
