//! The writes every paid call makes (its claim, its transitions, its channel's compare-and-swap), each as one
//! [`Statement`]: its SQL text and its parameters as values, built once here and bound alike by sqlx (on either
//! backend, [`Statement::query`]) and by the SQLite connection that runs on the calling thread
//! (`crate::sqlite_direct`). One text and one list of values per write, whichever driver runs it; on PostgreSQL,
//! two writes kept together are made one statement ([`Statement::together_pg`]).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{LazyLock, RwLock};

use paygate_core::channel::Channel;

use crate::{NewPayment, PaymentId, PaymentState, Transition};

/// A parameter's value: text or an integer, either possibly NULL.
#[derive(Debug, Clone)]
pub(crate) enum Param<'a> {
    Text(Option<Cow<'a, str>>),
    Int(Option<i64>),
}

impl<'a> Param<'a> {
    fn text(text: impl Into<Cow<'a, str>>) -> Param<'a> {
        Param::Text(Some(text.into()))
    }

    fn int(int: i64) -> Param<'a> {
        Param::Int(Some(int))
    }
}

/// One statement: its text, whose parameters are `$1`, `$2`, ... (in any order), and their values in number
/// order.
#[derive(Debug, Clone)]
pub(crate) struct Statement<'a> {
    pub sql: &'static str,
    pub params: Vec<Param<'a>>,
    /// Whether it returns one integer (`RETURNING id`).
    pub returning: bool,
}

/// What a write did.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Written {
    /// How many rows it changed.
    pub changed: u64,
    /// The integer its `RETURNING` clause returned, if any.
    pub returned: Option<i64>,
}

/// A channel's calls in flight as its row keeps them (JSON).
pub(crate) fn in_flight_json(c: &Channel) -> String {
    serde_json::to_string(&c.in_flight).unwrap_or_else(|_| "{}".to_owned())
}

/// A channel's settleable voucher as its row keeps it (JSON; empty for none).
pub(crate) fn settleable_json(c: &Channel) -> String {
    c.settleable.as_ref().and_then(|v| serde_json::to_string(v).ok()).unwrap_or_default()
}

/// How many states a transition may start from: the statement names that many, padded with the first.
pub(crate) const TRANSITION_FROM: usize = 8;

impl<'a> Statement<'a> {
    /// Inserts a new payment row in `state` (its first event written by the trigger of migration 0009), returning
    /// its id; no row when its proof (or live challenge) is already there.
    pub fn insert_payment(p: &'a NewPayment, state: PaymentState, now: i64) -> Statement<'a> {
        Statement {
            sql: "INSERT INTO payments (proof_key, challenge_id, state, created_at_ms, updated_at_ms, request_id, route, \
                  protocol, rail, option_name, network, asset, asset_symbol, decimals, amount, payer, pay_to, settlement) \
                  VALUES ($1, $2, $17, $3, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) \
                  ON CONFLICT DO NOTHING RETURNING id",
            returning: true,
            params: vec![
                Param::text(p.proof_key.as_str()),
                Param::Text(p.challenge_id.as_deref().map(Cow::Borrowed)),
                Param::int(now),
                Param::text(p.request_id.as_str()),
                Param::text(p.route.as_str()),
                Param::text(p.protocol.as_str()),
                Param::text(p.rail.as_str()),
                Param::text(p.option_name.as_str()),
                Param::text(p.network.as_str()),
                Param::text(p.asset.as_str()),
                Param::text(p.asset_symbol.as_str()),
                Param::int(i64::from(p.decimals)),
                Param::text(p.amount.to_string()),
                Param::text(p.payer.as_str()),
                Param::text(p.pay_to.as_str()),
                Param::text(p.settlement.to_string()),
                Param::text(state.as_str()),
            ],
        }
    }

    /// Moves payment `id` to `to` only from one of `from` (at least one, at most [`TRANSITION_FROM`]): a
    /// compare-and-swap, whose event the trigger of migration 0009 writes in the same statement. One statement
    /// text for every transition.
    pub fn transition(
        id: PaymentId,
        from: &[PaymentState],
        to: PaymentState,
        t: &Transition<'a>,
        now: i64,
    ) -> Statement<'a> {
        let mut params = vec![
            Param::text(to.as_str()),
            Param::text(t.reason),
            Param::Text(t.tx_hash.map(Cow::Borrowed)),
            Param::Int(t.upstream_status.map(i64::from)),
            Param::int(now),
            Param::Int(t.response_owed.map(i64::from)),
            Param::Int(t.recheck.map(i64::from)),
            Param::Text(t.amount.map(Cow::Borrowed)),
            Param::int(id),
        ];
        let first = from.first().copied().unwrap_or(to);
        params.extend((0..TRANSITION_FROM).map(|i| Param::text(from.get(i).copied().unwrap_or(first).as_str())));
        Statement {
            sql: "UPDATE payments SET state = $1, reason = $2, tx_hash = COALESCE($3, tx_hash), \
                  upstream_status = COALESCE($4, upstream_status), updated_at_ms = $5, transitioned_at_ms = $5, \
                  response_owed = COALESCE($6, response_owed), recheck = COALESCE($7, recheck), \
                  amount = COALESCE($8, amount) \
                  WHERE id = $9 AND state IN ($10, $11, $12, $13, $14, $15, $16, $17)",
            params,
            returning: false,
        }
    }

    /// Writes channel `c` if its row's version is still `expected`: the compare-and-swap every change of a
    /// channel is.
    pub fn swap_channel(expected: i64, c: &'a Channel, now: i64) -> Statement<'a> {
        Statement {
            sql: "UPDATE channels SET deposit = $1, claimed = $2, charged = $3, voucher_max = $4, \
                  voucher_signature = $5, version = $6 + 1, unclaimed = $7, updated_at_ms = $8, in_flight = $10, \
                  settleable = $11 \
                  WHERE id = $9 AND version = $6",
            returning: false,
            params: vec![
                Param::text(c.deposit.to_string()),
                Param::text(c.claimed.to_string()),
                Param::text(c.charged.to_string()),
                Param::text(c.voucher_max.to_string()),
                Param::text(c.voucher_signature.as_str()),
                Param::int(expected),
                Param::int(i64::from(c.unclaimed() > 0)),
                Param::int(now),
                Param::text(c.id.as_str()),
                Param::text(in_flight_json(c)),
                Param::text(settleable_json(c)),
            ],
        }
    }

    /// On PostgreSQL, `self` and `then` kept together (all or nothing) as one statement of data-modifying `WITH`
    /// queries: one round trip where their transaction (`BEGIN`, each, `COMMIT`) took four. `then` runs only when
    /// `self` changed a row (an `UPDATE` whose `WHERE` joins its conditions with `AND`, or an `INSERT ... VALUES`);
    /// a `then` that changed none fails the statement through `paygate_undo()` (migration 0012), which undoes
    /// `self`. [`read_together`] reads what it did. Put first the write that most often changes nothing (a
    /// compare-and-swap that lost): it then ends the statement without a failure for the server to log.
    pub fn together_pg(&self, then: &Statement<'a>) -> Statement<'a> {
        static TEXTS: LazyLock<RwLock<HashMap<(&'static str, &'static str), &'static str>>> =
            LazyLock::new(Default::default);
        let key = (self.sql, then.sql);
        let cached = TEXTS.read().unwrap_or_else(|p| p.into_inner()).get(&key).copied();
        let sql = cached.unwrap_or_else(|| {
            let returning = |s: &Statement<'_>, sql: String| {
                if s.returning { sql } else { format!("{sql} RETURNING 0::bigint AS id") }
            };
            let first = returning(self, self.sql.to_owned());
            let then = returning(then, only_after_first(&renumbered(then.sql, self.params.len())));
            let text = format!(
                "WITH first_write AS ({first}), then_write AS ({then}) \
                 SELECT (SELECT count(*) FROM first_write), (SELECT max(id) FROM first_write), \
                 (SELECT max(id) FROM then_write), \
                 CASE WHEN NOT EXISTS (SELECT 1 FROM first_write) OR EXISTS (SELECT 1 FROM then_write) THEN 0 \
                 ELSE paygate_undo() END"
            );
            // Two pairs of writes are ever kept together: each text is made once and kept for the process's life.
            let text: &'static str = Box::leak(text.into_boxed_str());
            TEXTS.write().unwrap_or_else(|p| p.into_inner()).insert(key, text);
            text
        });
        let params = self.params.iter().chain(&then.params).cloned().collect();
        Statement { sql, params, returning: true }
    }

    /// The statement with its values owned, to be run by another task.
    pub fn to_owned_statement(&self) -> Statement<'static> {
        let params = self
            .params
            .iter()
            .map(|param| match param {
                Param::Text(text) => Param::Text(text.as_deref().map(|t| Cow::Owned(t.to_owned()))),
                Param::Int(int) => Param::Int(*int),
            })
            .collect();
        Statement { sql: self.sql, params, returning: self.returning }
    }

    /// The statement as a sqlx query of backend `DB`, its parameters bound in number order.
    pub fn query<DB>(&'a self) -> sqlx::query::Query<'a, DB, <DB as sqlx::Database>::Arguments>
    where
        DB: sqlx::Database,
        Option<&'a str>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
        Option<i64>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    {
        self.params.iter().fold(sqlx::query(self.sql), |query, param| match param {
            Param::Text(text) => query.bind(text.as_deref()),
            Param::Int(int) => query.bind(*int),
        })
    }
}

/// `sql` with each parameter `$n` numbered `$(n + by)`.
fn renumbered(sql: &str, by: usize) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut rest = sql;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..=at]);
        rest = &rest[at + 1..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        match rest[..digits].parse::<usize>() {
            Ok(n) => out.push_str(&(n + by).to_string()),
            Err(_) => out.push_str(&rest[..digits]),
        }
        rest = &rest[digits..];
    }
    out.push_str(rest);
    out
}

/// The SQLSTATE `paygate_undo()` raises.
const UNDONE: &str = "PGU01";

/// `sql` (an `UPDATE ... WHERE`, or an `INSERT ... VALUES (...)` with a clause after them) changing rows only
/// when the write `first_write` changed one.
fn only_after_first(sql: &str) -> String {
    const AFTER_FIRST: &str = "EXISTS (SELECT 1 FROM first_write)";
    let Some(values) = sql.find(" VALUES (") else { return format!("{sql} AND {AFTER_FIRST}") };
    let (head, rest) = sql.split_at(values);
    let rest = &rest[" VALUES (".len()..];
    let close = rest.find(") ON CONFLICT").or_else(|| rest.rfind(')')).unwrap_or(rest.len());
    let tail = rest.get(close + 1..).unwrap_or("");
    format!("{head} SELECT {} WHERE {AFTER_FIRST}{tail}", &rest[..close])
}

/// What a statement made by [`Statement::together_pg`] did (its row, or the failure that undid its first write),
/// as the results of its two writes run one by one would say: `[first]` when the first changed nothing,
/// `[first, then]` otherwise, each with its returned id when it returns one (`returns`).
pub(crate) fn read_together<R: sqlx::Row>(
    answer: Result<R, sqlx::Error>,
    returns: [bool; 2],
) -> Result<Vec<Written>, sqlx::Error>
where
    usize: sqlx::ColumnIndex<R>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<i64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let row = match answer {
        Ok(row) => row,
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some(UNDONE) => {
            return Ok(vec![Written { changed: 1, returned: None }, Written { changed: 0, returned: None }]);
        }
        Err(e) => return Err(e),
    };
    let changed: i64 = row.try_get(0)?;
    if changed == 0 {
        return Ok(vec![Written { changed: 0, returned: None }]);
    }
    let (first, then): (Option<i64>, Option<i64>) = (row.try_get(1)?, row.try_get(2)?);
    Ok(vec![
        Written { changed: changed.unsigned_abs(), returned: first.filter(|_| returns[0]) },
        Written { changed: 1, returned: then.filter(|_| returns[1]) },
    ])
}

#[cfg(test)]
mod tests {
    use super::{only_after_first, renumbered};

    #[test]
    fn parameters_are_renumbered_and_nothing_else() {
        assert_eq!(
            renumbered("UPDATE t SET a = $1, b = $10 WHERE id = $9 AND c = '$'", 17),
            "UPDATE t SET a = $18, b = $27 WHERE id = $26 AND c = '$'"
        );
    }

    #[test]
    fn a_second_write_is_made_to_wait_for_the_first() {
        assert_eq!(
            only_after_first("UPDATE t SET a = $1 WHERE id = $2 AND v = $3"),
            "UPDATE t SET a = $1 WHERE id = $2 AND v = $3 AND EXISTS (SELECT 1 FROM first_write)"
        );
        assert_eq!(
            only_after_first("INSERT INTO t (a, b) VALUES ($1, lower($2)) ON CONFLICT DO NOTHING RETURNING id"),
            "INSERT INTO t (a, b) SELECT $1, lower($2) WHERE EXISTS (SELECT 1 FROM first_write) ON CONFLICT DO NOTHING \
             RETURNING id"
        );
        assert_eq!(
            only_after_first("INSERT INTO t (a) VALUES (lower($1))"),
            "INSERT INTO t (a) SELECT lower($1) WHERE EXISTS (SELECT 1 FROM first_write)"
        );
    }
}
