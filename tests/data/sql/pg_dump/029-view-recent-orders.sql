--
-- Name: recent_orders; Type: VIEW; Schema: public; Owner: postgres
--

CREATE VIEW public.recent_orders AS
 SELECT o.id,
    o.total,
    c.email
   FROM (public.orders o
     JOIN public.customers c ON ((c.id = o.customer_id)))
  WHERE (o.updated_at > (now() - '7 days'::interval));


ALTER TABLE public.recent_orders OWNER TO postgres;
