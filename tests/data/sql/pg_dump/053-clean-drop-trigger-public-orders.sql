DROP TRIGGER IF EXISTS orders_touch ON public.orders;
