-- `payments_state (state)` is the leading column of `payments_updated (state, updated_at_ms)`, which answers every
-- lookup by state the first one answered: keeping both wrote the same entry twice on each claim and transition.
DROP INDEX IF EXISTS payments_state;
