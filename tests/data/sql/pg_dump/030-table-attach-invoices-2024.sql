--
-- Name: invoices_2024; Type: TABLE ATTACH; Schema: billing; Owner: postgres
--

ALTER TABLE ONLY billing.invoices ATTACH PARTITION billing.invoices_2024 FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
