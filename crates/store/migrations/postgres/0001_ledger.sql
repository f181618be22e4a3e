-- The ledger: one row per payment proof, claimed atomically, with every state transition recorded. The same
-- schema as the SQLite one, in PostgreSQL's types.
CREATE TABLE payments (
    id              BIGSERIAL PRIMARY KEY,
    -- The money itself: (network, payer, EIP-3009 nonce), a tx hash, a payment hash. Claimed at most once.
    proof_key       TEXT    NOT NULL UNIQUE,
    -- The challenge the proof answered; single-use among rows that are not voided.
    challenge_id    TEXT,
    state           TEXT    NOT NULL,
    created_at_ms   BIGINT  NOT NULL,
    updated_at_ms   BIGINT  NOT NULL,
    request_id      TEXT    NOT NULL,
    route           TEXT    NOT NULL,
    protocol        TEXT    NOT NULL,
    rail            TEXT    NOT NULL,
    option_name     TEXT    NOT NULL,
    network         TEXT    NOT NULL,
    asset           TEXT    NOT NULL,
    asset_symbol    TEXT    NOT NULL,
    decimals        BIGINT  NOT NULL,
    -- Atomic units as a decimal string, as in SQLite: u128 does not fit BIGINT.
    amount          TEXT    NOT NULL,
    payer           TEXT    NOT NULL,
    pay_to          TEXT    NOT NULL,
    tx_hash         TEXT,
    upstream_status BIGINT,
    -- What the rail needs to finish settlement (the signed authorization), for the reconciler.
    settlement      TEXT    NOT NULL,
    reason          TEXT
);

CREATE UNIQUE INDEX payments_live_challenge ON payments (challenge_id)
    WHERE challenge_id IS NOT NULL AND state <> 'voided';
CREATE INDEX payments_created ON payments (created_at_ms);
CREATE INDEX payments_state ON payments (state);

CREATE TABLE payment_events (
    id          BIGSERIAL PRIMARY KEY,
    payment_id  BIGINT  NOT NULL REFERENCES payments (id),
    at_ms       BIGINT  NOT NULL,
    from_state  TEXT,
    to_state    TEXT    NOT NULL,
    reason      TEXT    NOT NULL
);

CREATE INDEX payment_events_payment ON payment_events (payment_id);
