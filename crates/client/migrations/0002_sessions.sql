-- Payment channels (MPP `evm` sessions): a deposit counts against the budgets when it is made (a `deposit` row),
-- the calls it pays are `voucher` rows that do not count again, and what a close refunds comes back (a `refund`
-- row, negative `usd_micros`).
ALTER TABLE spend_log ADD COLUMN kind TEXT NOT NULL DEFAULT 'payment'
    CHECK (kind IN ('payment', 'deposit', 'voucher', 'refund'));
ALTER TABLE spend_log ADD COLUMN channel_id TEXT;

-- Each channel this payer opened, with what it deposited and the cumulative amount of its last voucher.
CREATE TABLE sessions (
    channel_id    TEXT    PRIMARY KEY,
    host          TEXT    NOT NULL,
    -- The last request it paid (method and URL): a close asks there for a fresh challenge.
    method        TEXT    NOT NULL,
    url           TEXT    NOT NULL,
    network       TEXT    NOT NULL,
    escrow        TEXT    NOT NULL,
    payee         TEXT    NOT NULL,
    asset         TEXT    NOT NULL,
    salt          TEXT    NOT NULL,
    deposit       TEXT    NOT NULL,
    cumulative    TEXT    NOT NULL,
    state         TEXT    NOT NULL CHECK (state IN ('open', 'closed')),
    opened_at_ms  INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
);
