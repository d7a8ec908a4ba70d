-- V1__init.sql
CREATE SCHEMA IF NOT EXISTS inventory;

CREATE TABLE inventory.item (
    id          BIGSERIAL PRIMARY KEY,
    sku         TEXT NOT NULL UNIQUE,
    description TEXT,
    qty         INTEGER NOT NULL DEFAULT 0 CHECK (qty >= 0)
);

CREATE INDEX item_sku_lower_idx ON inventory.item (lower(sku));
