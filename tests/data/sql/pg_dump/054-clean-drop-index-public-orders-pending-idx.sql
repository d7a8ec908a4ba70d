DROP INDEX IF EXISTS public.orders_pending_idx;
