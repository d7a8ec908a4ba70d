--
-- Name: invoices_2024_pkey; Type: INDEX ATTACH; Schema: billing; Owner: postgres
--

ALTER INDEX billing.invoices_pkey ATTACH PARTITION billing.invoices_2024_pkey;
