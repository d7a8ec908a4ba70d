--
-- Name: orders_pending_idx; Type: INDEX; Schema: public; Owner: postgres
--

CREATE INDEX orders_pending_idx ON public.orders USING btree (id) WHERE (status = 'pending'::public.order_status);
