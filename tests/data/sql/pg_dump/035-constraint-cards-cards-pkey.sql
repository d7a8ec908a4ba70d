--
-- Name: cards cards_pkey; Type: CONSTRAINT; Schema: billing; Owner: postgres
--

ALTER TABLE ONLY billing.cards
    ADD CONSTRAINT cards_pkey PRIMARY KEY (id);
