-- A `failed` settlement is checked against the chain again until its rail says the failure is final: a
-- facilitator that answered "failed" may have landed the transfer after all.
ALTER TABLE payments ADD COLUMN recheck BIGINT NOT NULL DEFAULT 0;
CREATE INDEX payments_recheck ON payments (recheck) WHERE recheck = 1;

-- x402 `payment-identifier`s: a client's idempotency key for one payment, bound to the digest of the exact
-- payload it came with. Once the paid request is answered, the answer is kept so that the same payload sent
-- again gets it again instead of a refusal.
CREATE TABLE payment_identifiers (
    -- The route's name and the client's id.
    key             TEXT    PRIMARY KEY,
    payload_digest  TEXT    NOT NULL,
    created_at_ms   BIGINT  NOT NULL,
    -- 0 while the first request is being processed, 1 once its answer is kept.
    answered        BIGINT  NOT NULL DEFAULT 0,
    status          BIGINT,
    -- JSON: [[name, value], ...].
    headers         TEXT,
    -- NULL when the body was too large to keep: the upstream is asked again, without a second charge.
    body            BYTEA
);
CREATE INDEX payment_identifiers_created ON payment_identifiers (created_at_ms);

-- Rate limits shared by all instances: one generic cell rate (GCRA) per key, its theoretical arrival time in Unix
-- milliseconds, moved by one conditional statement per request.
CREATE TABLE rate_limits (
    key             TEXT    PRIMARY KEY,
    tat_ms          BIGINT NOT NULL
);
