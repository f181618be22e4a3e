-- Calls counted per payer or client IP per period, for free quotas and usage tiers. One row per counter and
-- period; `calls` only moves by one, through a conditional update, so concurrent calls are each counted once.
CREATE TABLE call_counters (
    counter         TEXT    NOT NULL,
    -- Unix seconds at which the period began (UTC calendar hour, day, week or month).
    period_start    INTEGER NOT NULL,
    calls           INTEGER NOT NULL,
    PRIMARY KEY (counter, period_start)
);
