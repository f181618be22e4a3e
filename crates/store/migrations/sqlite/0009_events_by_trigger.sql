-- A payment's first event and each transition's are written by the statement that makes them, through these
-- triggers: a claim is one INSERT (a round trip to the database, instead of a transaction of four), a transition
-- one UPDATE (instead of a transaction of five), each atomic on its own. The transition trigger fires only for
-- `Store::transition`'s statement, the only one that sets `transitioned_at_ms`.
ALTER TABLE payments ADD COLUMN transitioned_at_ms INTEGER;

CREATE TRIGGER payment_transition_event AFTER UPDATE OF transitioned_at_ms ON payments
BEGIN
    INSERT INTO payment_events (payment_id, at_ms, from_state, to_state, reason)
    VALUES (NEW.id, NEW.transitioned_at_ms, OLD.state, NEW.state, NEW.reason);
END;

CREATE TRIGGER payment_first_event AFTER INSERT ON payments
BEGIN
    INSERT INTO payment_events (payment_id, at_ms, from_state, to_state, reason)
    VALUES (NEW.id, NEW.created_at_ms, NULL, NEW.state, CASE NEW.state WHEN 'metered' THEN 'metered' ELSE 'claimed' END);
END;
