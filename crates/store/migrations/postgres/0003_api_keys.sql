-- API-key customers: keys are random and stored only as their SHA-256; their calls are `metered` ledger rows.
CREATE TABLE api_keys (
    id              BIGSERIAL PRIMARY KEY,
    name            TEXT    NOT NULL UNIQUE,
    key_hash        TEXT    NOT NULL UNIQUE,
    -- The key's first characters, to recognize it in listings.
    prefix          TEXT    NOT NULL,
    created_at_ms   BIGINT  NOT NULL,
    revoked_at_ms   BIGINT
);
