-- PACKS_FILE (SPEC §2): packs the merchant removed from the file are hidden from the
-- checkout, not deleted: their orders keep pointing at them (and keep their own copied
-- credits, amount and currency).
ALTER TABLE packs ADD COLUMN active boolean NOT NULL DEFAULT true;
