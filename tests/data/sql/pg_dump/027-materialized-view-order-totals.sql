--
-- Name: order_totals; Type: MATERIALIZED VIEW; Schema: public; Owner: postgres
--

CREATE MATERIALIZED VIEW public.order_totals AS
 SELECT orders.customer_id,
    sum(orders.total) AS total
   FROM public.orders
  GROUP BY orders.customer_id
  WITH NO DATA;


ALTER TABLE public.order_totals OWNER TO postgres;
