--
-- Name: invoices_2025; Type: TABLE ATTACH; Schema: billing; Owner: postgres
--

ALTER TABLE ONLY billing.invoices ATTACH PARTITION billing.invoices_2025 FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
