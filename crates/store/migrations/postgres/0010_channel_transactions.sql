-- The journal of channel transactions: each claim, sweep, settlement, refund and close a channel settler signs,
-- with its signed bytes, written before it is broadcast and decided from the chain afterwards (after a crash
-- too). Amounts are decimal strings of atomic units.
CREATE TABLE channel_transactions (
    hash            TEXT    PRIMARY KEY,
    option_name     TEXT    NOT NULL,
    -- claim | sweep | settle | refund | close
    kind            TEXT    NOT NULL,
    -- The channel it is about, or empty.
    channel_id      TEXT    NOT NULL,
    amount          TEXT    NOT NULL,
    -- 0x + hex of the EIP-2718 bytes.
    raw             TEXT    NOT NULL,
    -- sent | mined | failed
    state           TEXT    NOT NULL,
    created_at_ms   BIGINT  NOT NULL,
    decided_at_ms   BIGINT
);
CREATE INDEX channel_transactions_undecided ON channel_transactions (option_name, created_at_ms) WHERE state = 'sent';
