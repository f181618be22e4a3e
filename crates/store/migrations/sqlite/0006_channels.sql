-- Payment channels: a payer's deposit in escrow, paid by cumulative vouchers checked locally (x402
-- `batch-settlement`). One row per channel; every change is one conditional update on `version`, so instances
-- sharing this store never accept more than the deposit. Amounts are decimal strings of atomic units.
CREATE TABLE channels (
    id                  TEXT    PRIMARY KEY,
    network             TEXT    NOT NULL,
    option_name         TEXT    NOT NULL,
    payer               TEXT    NOT NULL,
    receiver            TEXT    NOT NULL,
    token               TEXT    NOT NULL,
    -- JSON: what the scheme needs to claim from the channel (the x402 ChannelConfig).
    config              TEXT    NOT NULL,
    deposit             TEXT    NOT NULL,
    claimed             TEXT    NOT NULL,
    charged             TEXT    NOT NULL,
    voucher_max         TEXT    NOT NULL,
    voucher_signature   TEXT    NOT NULL,
    -- JSON: each call in flight, by the cumulative amount of the voucher that pays it, with its price.
    in_flight           TEXT    NOT NULL,
    version             INTEGER  NOT NULL,
    -- 1 while charged exceeds claimed: what the settler looks at.
    unclaimed           INTEGER  NOT NULL DEFAULT 0,
    created_at_ms       INTEGER  NOT NULL,
    updated_at_ms       INTEGER  NOT NULL
);
CREATE INDEX channels_unclaimed ON channels (updated_at_ms) WHERE unclaimed = 1;
CREATE INDEX channels_payer ON channels (payer);
