--
-- Name: orders orders_owner; Type: POLICY; Schema: public; Owner: postgres
--

CREATE POLICY orders_owner ON public.orders USING ((customer_id = (current_setting('app.customer_id'::text))::bigint));
