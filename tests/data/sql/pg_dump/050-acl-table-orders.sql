--
-- Name: TABLE orders; Type: ACL; Schema: public; Owner: postgres
--

GRANT SELECT ON TABLE public.orders TO app_readonly;
GRANT SELECT,INSERT,UPDATE ON TABLE public.orders TO app_writer;
