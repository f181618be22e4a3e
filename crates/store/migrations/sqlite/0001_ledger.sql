-- The ledger: one row per payment proof, claimed atomically, with every state transition recorded.
CREATE TABLE payments (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    -- The money itself: (network, payer, EIP-3009 nonce), a tx hash, a payment hash. Claimed at most once.
    proof_key       TEXT    NOT NULL UNIQUE,
    -- The challenge the proof answered; single-use among rows that are not voided.
    challenge_id    TEXT,
    state           TEXT    NOT NULL,
    created_at_ms   INTEGER NOT NULL,
    updated_at_ms   INTEGER NOT NULL,
    request_id      TEXT    NOT NULL,
    route           TEXT    NOT NULL,
    protocol        TEXT    NOT NULL,
    rail            TEXT    NOT NULL,
    option_name     TEXT    NOT NULL,
    network         TEXT    NOT NULL,
    asset           TEXT    NOT NULL,
    asset_symbol    TEXT    NOT NULL,
    decimals        INTEGER NOT NULL,
    -- Atomic units as a decimal string: u128 does not fit SQLite's INTEGER.
    amount          TEXT    NOT NULL,
    payer           TEXT    NOT NULL,
    pay_to          TEXT    NOT NULL,
    tx_hash         TEXT,
    upstream_status INTEGER,
    -- What the rail needs to finish settlement (the signed authorization), for the reconciler.
    settlement      TEXT    NOT NULL,
    reason          TEXT
);

CREATE UNIQUE INDEX payments_live_challenge ON payments (challenge_id)
    WHERE challenge_id IS NOT NULL AND state <> 'voided';
CREATE INDEX payments_created ON payments (created_at_ms);
CREATE INDEX payments_state ON payments (state);

CREATE TABLE payment_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    payment_id  INTEGER NOT NULL REFERENCES payments (id),
    at_ms       INTEGER NOT NULL,
    from_state  TEXT,
    to_state    TEXT    NOT NULL,
    reason      TEXT    NOT NULL
);

CREATE INDEX payment_events_payment ON payment_events (payment_id);
