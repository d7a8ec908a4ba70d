--
-- Name: cards_id_seq; Type: SEQUENCE SET; Schema: billing; Owner: postgres
--

SELECT pg_catalog.setval('billing.cards_id_seq', 1, true);
