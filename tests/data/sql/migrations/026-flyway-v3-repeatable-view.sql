-- R__item_view.sql
CREATE OR REPLACE VIEW inventory.item_summary AS
SELECT sku, qty, qty > 0 AS in_stock
  FROM inventory.item;
