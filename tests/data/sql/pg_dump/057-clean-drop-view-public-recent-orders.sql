DROP VIEW IF EXISTS public.recent_orders;
