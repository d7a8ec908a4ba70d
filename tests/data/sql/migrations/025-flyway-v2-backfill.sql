-- V2__backfill_item_qty.sql
UPDATE inventory.item SET qty = 0 WHERE qty IS NULL;
ALTER TABLE inventory.item ALTER COLUMN qty SET NOT NULL;
