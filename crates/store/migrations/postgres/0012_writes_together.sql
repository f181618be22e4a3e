-- Two writes kept together (a claim and its channel's reservation; a charge and its payment's move) run as one
-- statement of data-modifying WITH queries, one round trip instead of a transaction's four
-- (crates/store/src/statement.rs, Statement::together_pg). When the second changes no row, the statement calls
-- this, and failing undoes the first; SQLSTATE PGU01 tells that failure from any other.
CREATE FUNCTION paygate_undo() RETURNS BIGINT LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RAISE EXCEPTION 'paygate: the second write changed nothing; the first is undone' USING ERRCODE = 'PGU01';
END
$$;
