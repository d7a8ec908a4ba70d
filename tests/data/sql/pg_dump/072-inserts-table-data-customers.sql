--
-- Data for Name: customers; Type: TABLE DATA; Schema: public; Owner: postgres
--

INSERT INTO public.customers VALUES (1, 'ada@example.com', 'Ada Lovelace', '123-45-6789', '2026-11-24 04:09:59.111851+00', DEFAULT);
INSERT INTO public.customers VALUES (2, 'o''brien@example.com', 'Flann O''Brien', NULL, '2026-11-24 04:09:59.111851+00', DEFAULT);
