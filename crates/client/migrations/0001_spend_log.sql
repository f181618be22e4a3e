-- Every payment the client decided to make, written as `pending` before anything is signed.
CREATE TABLE spend_log (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms         INTEGER NOT NULL,
    method        TEXT    NOT NULL,
    url           TEXT    NOT NULL,
    host          TEXT    NOT NULL,
    protocol      TEXT    NOT NULL,
    network       TEXT    NOT NULL,
    asset         TEXT    NOT NULL,
    -- Atomic units as decimal text: a u128 does not fit an SQLite integer.
    amount_atomic TEXT    NOT NULL,
    usd_micros    INTEGER NOT NULL,
    state         TEXT    NOT NULL CHECK (state IN ('pending', 'paid', 'rejected', 'failed')),
    -- The signed authorization, written before it is sent: with network and asset, what a later run needs to
    -- ask the chain whether a payment left `pending` was settled (`authorizationState(payer, nonce)`).
    payer         TEXT,
    nonce         TEXT,
    valid_before  INTEGER,
    reference     TEXT,
    error         TEXT
);

CREATE INDEX spend_log_at ON spend_log (at_ms);
CREATE INDEX spend_log_host_at ON spend_log (host, at_ms);
