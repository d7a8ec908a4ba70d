DROP FUNCTION IF EXISTS public.touch_updated_at();
