DROP TABLE IF EXISTS public.orders;
