-- A settled payment whose response the payer never got (the gateway died while settling it; the reconciler
-- finished the settlement): the same proof, sent again, is served once more without a second charge.
ALTER TABLE payments ADD COLUMN response_owed BIGINT NOT NULL DEFAULT 0;
CREATE INDEX payments_updated ON payments (state, updated_at_ms);
