--
-- Data for Name: orders; Type: TABLE DATA; Schema: public; Owner: postgres
--

INSERT INTO public.orders VALUES (1, 1, 'paid', 42.50, '{"gift": true}', NULL);
INSERT INTO public.orders VALUES (2, 2, 'pending', 7.00, '{}', NULL);
