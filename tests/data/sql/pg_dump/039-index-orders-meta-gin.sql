--
-- Name: orders_meta_gin; Type: INDEX; Schema: public; Owner: postgres
--

CREATE INDEX orders_meta_gin ON public.orders USING gin (meta jsonb_path_ops);
