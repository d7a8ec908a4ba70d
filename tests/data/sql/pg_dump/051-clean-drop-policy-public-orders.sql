DROP POLICY IF EXISTS orders_owner ON public.orders;
