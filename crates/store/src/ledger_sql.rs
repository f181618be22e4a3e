//! The one implementation of [`crate::Store`] both backends share, as a macro that each backend module expands
//! over its own pool. The statements are the same text for SQLite and PostgreSQL: sqlx binds `$N` parameters
//! the same way for both, `CAST($1 AS TEXT)` types a parameter that may be NULL, and `ON CONFLICT DO NOTHING
//! RETURNING` means the same. One thing differs and is the macro's argument: how a write transaction begins
//! (SQLite's `BEGIN IMMEDIATE` takes the write lock up front, so claims are serialized). A transition is one
//! `UPDATE ... WHERE state IN (...)`, a compare-and-swap on both, whose event a trigger writes (migration 0009).
//!
//! A macro rather than a function generic over `sqlx::Database`: the executor, encode and decode bounds such a
//! function needs for every bound and read type would be longer than the code they serve.

/// Expands, in the calling module, a module `ledger` with `impl Store for $store` (whose `pool` field is a pool
/// of `$db`), its helpers, and `ledger::unavailable`, the store's error for a database failure. `$begin` starts a
/// write transaction; `$one_statement` says whether two writes kept together run as one statement
/// (`Statement::together_pg`: PostgreSQL) rather than in a transaction of their own.
macro_rules! impl_store {
    ($store:ident, $db:ty, begin: $begin:literal, one_statement: $one_statement:literal) => {
        mod ledger {
            use sqlx::Row as _;

            use crate::row::{RECORD_COLUMNS, record};
            use crate::sqlite_direct::Direct;
            use crate::statement::{Statement, TRANSITION_FROM, Written};
            use crate::{
                ApiKey, CallRange, Claim, ClaimWithChannel, Identified, KeptAnswer, NewPayment, PaymentEvent, PaymentId, PaymentQuery,
                PaymentRecord, PaymentState, StoreError, Transition, now_ms,
            };

            pub(super) fn unavailable(err: sqlx::Error) -> StoreError {
                StoreError::Unavailable(err)
            }

            fn api_key<R: sqlx::Row>(row: &R) -> ApiKey
            where
                for<'r> &'r str: sqlx::ColumnIndex<R>,
                for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
                for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
                for<'r> Option<i64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
            {
                ApiKey {
                    id: row.get("id"),
                    name: row.get("name"),
                    prefix: row.get("prefix"),
                    created_at_ms: row.get("created_at_ms"),
                    revoked_at_ms: row.get("revoked_at_ms"),
                }
            }

            /// A call count as the databases store it (a signed 64-bit integer), saturating.
            fn as_i64(count: u64) -> i64 {
                i64::try_from(count).unwrap_or(i64::MAX)
            }

            fn is_unique_violation(err: &sqlx::Error) -> bool {
                err.as_database_error().is_some_and(|e| e.is_unique_violation())
            }

            async fn record_event(
                tx: &mut sqlx::Transaction<'_, $db>,
                id: PaymentId,
                from: Option<PaymentState>,
                to: PaymentState,
                reason: &str,
                at_ms: i64,
            ) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO payment_events (payment_id, at_ms, from_state, to_state, reason) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(id)
                .bind(at_ms)
                .bind(from.map(PaymentState::as_str))
                .bind(to.as_str())
                .bind(reason)
                .execute(&mut **tx)
                .await
                .map_err(unavailable)?;
                Ok(())
            }

            impl super::$store {
                /// Runs one write, committed before it answers: on the direct connection when there is one and it
                /// can, else through sqlx. How many rows it changed.
                pub(crate) async fn write(&self, statement: &Statement<'_>) -> Result<u64, StoreError> {
                    if let Some(direct) = self.direct()
                        && let Direct::Done(written) = direct.write(statement.to_owned_statement()).await
                    {
                        return Ok(written.changed);
                    }
                    let done = statement.query::<$db>().execute(&self.pool).await.map_err(unavailable)?;
                    Ok(done.rows_affected())
                }

                /// Runs `statements` in one transaction through sqlx, all kept or none, as
                /// `DirectConnection::write_together` does: how many rows each changed, up to the first that
                /// changed none.
                async fn write_together_through_sqlx(&self, statements: &[Statement<'_>]) -> Result<Vec<Written>, StoreError> {
                    let mut tx = self.pool.begin_with($begin).await.map_err(unavailable)?;
                    let mut written = Vec::with_capacity(statements.len());
                    for statement in statements {
                        let one = if statement.returning {
                            let row = statement.query::<$db>().fetch_optional(&mut *tx).await.map_err(unavailable)?;
                            let returned = row.map(|row| row.try_get::<i64, _>(0)).transpose().map_err(unavailable)?;
                            Written { changed: u64::from(returned.is_some()), returned }
                        } else {
                            let done = statement.query::<$db>().execute(&mut *tx).await.map_err(unavailable)?;
                            Written { changed: done.rows_affected(), returned: None }
                        };
                        written.push(one);
                        if one.changed == 0 {
                            return Ok(written); // Dropping the transaction rolls it back.
                        }
                    }
                    tx.commit().await.map_err(unavailable)?;
                    Ok(written)
                }

                /// Runs `statements` together, all kept or none (`write_together_through_sqlx`): on the direct connection when there is one and
                /// it can, else through sqlx.
                async fn write_together(&self, statements: &[Statement<'_>]) -> Result<Vec<Written>, StoreError> {
                    if let Some(direct) = self.direct()
                        && let Direct::Done(written) =
                            direct.write_together(statements.iter().map(Statement::to_owned_statement).collect()).await
                    {
                        return Ok(written);
                    }
                    if $one_statement && let [first, then] = statements {
                        let together = first.together_pg(then);
                        let answer = together.query::<$db>().fetch_one(&self.pool).await;
                        return crate::statement::read_together(answer, [first.returning, then.returning]).map_err(unavailable);
                    }
                    self.write_together_through_sqlx(statements).await
                }

                /// Inserts a new row in `state`, its first event written by the trigger of migration 0009; `None`
                /// when its proof (or live challenge) is already there.
                async fn insert_payment(
                    &self,
                    p: &NewPayment,
                    state: PaymentState,
                    now: i64,
                ) -> Result<Option<PaymentId>, StoreError> {
                    let insert = Statement::insert_payment(p, state, now);
                    if let Some(direct) = self.direct()
                        && let Direct::Done(written) = direct.write(insert.to_owned_statement()).await
                    {
                        return Ok(written.returned);
                    }
                    let row = insert.query::<$db>().fetch_optional(&self.pool).await.map_err(unavailable)?;
                    row.map(|row| row.try_get::<i64, _>(0)).transpose().map_err(unavailable)
                }
            }

            #[async_trait::async_trait]
            impl crate::Store for super::$store {
                async fn claim(&self, p: &NewPayment) -> Result<Claim, StoreError> {
                    let now = now_ms();
                    let settlement = p.settlement.to_string();
                    // One statement when the proof is new, as it nearly always is.
                    if let Some(id) = self.insert_payment(p, PaymentState::Verified, now).await? {
                        return Ok(Claim::Claimed(id));
                    }
                    let mut tx = self.pool.begin_with($begin).await.map_err(unavailable)?;

                    // The proof or the challenge is known (committed: SQLite serializes writers, PostgreSQL made the insert
                    // wait for it). A voided proof (the upstream failed, nothing was charged) may be claimed again; anything
                    // else is taken.
                    let existing = sqlx::query("SELECT id, state FROM payments WHERE proof_key = $1")
                        .bind(&p.proof_key)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(unavailable)?;
                    let (id, state) = match existing {
                        Some(row) => (row.get::<i64, _>("id"), row.get::<String, _>("state").parse::<PaymentState>()?),
                        None => {
                            let row = sqlx::query("SELECT id, state FROM payments WHERE challenge_id = $1 AND state <> 'voided' AND protocol = 'mpp'")
                                .bind(&p.challenge_id)
                                .fetch_one(&mut *tx)
                                .await
                                .map_err(unavailable)?;
                            return Ok(Claim::Taken { id: row.get("id"), state: row.get::<String, _>("state").parse()? });
                        }
                    };
                    if state != PaymentState::Voided {
                        return Ok(Claim::Taken { id, state });
                    }
                    let reclaimed = sqlx::query(
                        "UPDATE payments SET state = 'verified', challenge_id = $1, request_id = $2, route = $3, protocol = $4, \
                         settlement = $5, upstream_status = NULL, reason = NULL, updated_at_ms = $6 WHERE id = $7 AND state = 'voided'",
                    )
                    .bind(&p.challenge_id)
                    .bind(&p.request_id)
                    .bind(&p.route)
                    .bind(&p.protocol)
                    .bind(&settlement)
                    .bind(now)
                    .bind(id)
                    .execute(&mut *tx)
                    .await;
                    match reclaimed {
                        Ok(done) if done.rows_affected() == 1 => {
                            record_event(&mut tx, id, Some(PaymentState::Voided), PaymentState::Verified, "claimed again", now)
                                .await?;
                            tx.commit().await.map_err(unavailable)?;
                            Ok(Claim::Claimed(id))
                        }
                        // Another request took it back first (PostgreSQL's row lock made this one wait and see it).
                        Ok(_) => Ok(Claim::Taken { id, state: PaymentState::Verified }),
                        // Its challenge was used by another live payment meanwhile.
                        Err(e) if is_unique_violation(&e) => Ok(Claim::Taken { id, state }),
                        Err(e) => Err(unavailable(e)),
                    }
                }

                async fn transition(
                    &self,
                    id: PaymentId,
                    from: &[PaymentState],
                    to: PaymentState,
                    t: Transition<'_>,
                ) -> Result<(), StoreError> {
                    // One statement: the row changes only from one of `from` (a compare-and-swap, which PostgreSQL
                    // re-checks after waiting for a concurrent writer's lock), and the trigger of migration 0009 writes
                    // its event in the same statement.
                    let done = match from.len() {
                        0 => 0,
                        1..=TRANSITION_FROM => self.write(&Statement::transition(id, from, to, &t, now_ms())).await?,
                        n => return Err(StoreError::corrupt(format!("a transition from {n} states"))),
                    };
                    if done == 1 {
                        return Ok(());
                    }
                    // Not changed: say why.
                    match self.payment(id).await? {
                        Some(row) => Err(StoreError::WrongState {
                            id,
                            expected: from.first().map_or("", |s| s.as_str()),
                            actual: row.state,
                        }),
                        None => Err(StoreError::corrupt(format!("no payment {id}"))),
                    }
                }

                async fn claim_with_channel(
                    &self,
                    p: &NewPayment,
                    expected: i64,
                    next: &paygate_core::channel::Channel,
                ) -> Result<ClaimWithChannel, StoreError> {
                    let now = now_ms();
                    // The swap first: under concurrent calls on one channel it is the write that loses, and ends the
                    // write there (on PostgreSQL, without a failed statement).
                    let together =
                        [Statement::swap_channel(expected, next, now), Statement::insert_payment(p, PaymentState::Verified, now)];
                    let written = self.write_together(&together).await?;
                    Ok(match written.as_slice() {
                        [Written { changed: 1, .. }, Written { returned: Some(id), .. }] => ClaimWithChannel::Claimed(*id),
                        [_, _] => ClaimWithChannel::Taken,
                        _ => ClaimWithChannel::ChannelChanged,
                    })
                }

                async fn transition_with_channel(
                    &self,
                    id: PaymentId,
                    from: &[PaymentState],
                    to: PaymentState,
                    t: Transition<'_>,
                    expected: i64,
                    next: &paygate_core::channel::Channel,
                ) -> Result<bool, StoreError> {
                    if from.is_empty() || from.len() > TRANSITION_FROM {
                        return Err(StoreError::corrupt(format!("a transition from {} states", from.len())));
                    }
                    let now = now_ms();
                    let together = [Statement::swap_channel(expected, next, now), Statement::transition(id, from, to, &t, now)];
                    // How many rows each changed, the first to change none ending them (and undoing the others).
                    let written = self.write_together(&together).await?;
                    let changed: Vec<u64> = written.iter().map(|w| w.changed).collect();
                    match changed.as_slice() {
                        [1, 1] => Ok(true),
                        [0] => Ok(false),
                        _ => match self.payment(id).await? {
                            Some(row) => Err(StoreError::WrongState {
                                id,
                                expected: from.first().map_or("", |s| s.as_str()),
                                actual: row.state,
                            }),
                            None => Err(StoreError::corrupt(format!("no payment {id}"))),
                        },
                    }
                }

                async fn record_reference(&self, id: PaymentId, reference: Option<&str>) -> Result<(), StoreError> {
                    let done = sqlx::query(
                        "UPDATE payments SET tx_hash = $1, updated_at_ms = $2 WHERE id = $3 AND state = 'settling'",
                    )
                    .bind(reference)
                    .bind(now_ms())
                    .bind(id)
                    .execute(&self.pool)
                    .await
                    .map_err(unavailable)?;
                    if done.rows_affected() == 1 {
                        return Ok(());
                    }
                    let actual = match self.payment(id).await? {
                        Some(row) => row.state,
                        None => return Err(StoreError::corrupt(format!("no payment {id}"))),
                    };
                    Err(StoreError::WrongState { id, expected: "settling", actual })
                }

                async fn take_owed_response(
                    &self,
                    proof_key: &str,
                    challenge_id: Option<&str>,
                ) -> Result<Option<PaymentRecord>, StoreError> {
                    let taken: Option<PaymentId> = sqlx::query_scalar(
                        "UPDATE payments SET response_owed = 0, updated_at_ms = $2 \
                         WHERE proof_key = $1 AND state = 'settled' AND response_owed = 1 \
                         AND (CAST($3 AS TEXT) IS NULL OR challenge_id = $3) RETURNING id",
                    )
                    .bind(proof_key)
                    .bind(now_ms())
                    .bind(challenge_id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(unavailable)?;
                    match taken {
                        Some(id) => self.payment(id).await,
                        None => Ok(None),
                    }
                }

                async fn record_usage(&self, p: &NewPayment) -> Result<PaymentId, StoreError> {
                    self.insert_payment(p, PaymentState::Metered, now_ms())
                        .await?
                        .ok_or_else(|| StoreError::corrupt(format!("usage {} recorded twice", p.proof_key)))
                }

                async fn create_api_key(&self, name: &str, key_hash: &str, prefix: &str) -> Result<Option<ApiKey>, StoreError> {
                    let created = sqlx::query(
                        "INSERT INTO api_keys (name, key_hash, prefix, created_at_ms) VALUES ($1, $2, $3, $4) \
                         ON CONFLICT DO NOTHING RETURNING id, name, prefix, created_at_ms, revoked_at_ms",
                    )
                    .bind(name)
                    .bind(key_hash)
                    .bind(prefix)
                    .bind(now_ms())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(unavailable)?;
                    Ok(created.as_ref().map(api_key))
                }

                async fn api_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKey>, StoreError> {
                    let row = sqlx::query(
                        "SELECT id, name, prefix, created_at_ms, revoked_at_ms FROM api_keys WHERE key_hash = $1",
                    )
                    .bind(key_hash)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(unavailable)?;
                    Ok(row.as_ref().map(api_key))
                }

                async fn api_keys(&self) -> Result<Vec<ApiKey>, StoreError> {
                    let rows = sqlx::query("SELECT id, name, prefix, created_at_ms, revoked_at_ms FROM api_keys ORDER BY id")
                        .fetch_all(&self.pool)
                        .await
                        .map_err(unavailable)?;
                    Ok(rows.iter().map(api_key).collect())
                }

                async fn revoke_api_key(&self, name: &str) -> Result<bool, StoreError> {
                    let done = sqlx::query("UPDATE api_keys SET revoked_at_ms = $1 WHERE name = $2 AND revoked_at_ms IS NULL")
                        .bind(now_ms())
                        .bind(name)
                        .execute(&self.pool)
                        .await
                        .map_err(unavailable)?;
                    Ok(done.rows_affected() == 1)
                }

                async fn count_call(
                    &self,
                    counter: &str,
                    period_start: i64,
                    ranges: &[CallRange],
                ) -> Result<Option<u64>, StoreError> {
                    if ranges.is_empty() {
                        return Ok(None);
                    }
                    // `calls` before the update is this call's index; the condition holds it inside a range.
                    let mut condition = Vec::with_capacity(ranges.len());
                    let mut bounds = Vec::with_capacity(ranges.len() * 2);
                    for range in ranges {
                        let start = as_i64(range.start);
                        match range.end {
                            Some(end) => {
                                condition.push(format!(
                                    "(call_counters.calls >= ${} AND call_counters.calls < ${})",
                                    bounds.len() + 3,
                                    bounds.len() + 4
                                ));
                                bounds.extend([start, as_i64(end)]);
                            }
                            None => {
                                condition.push(format!("call_counters.calls >= ${}", bounds.len() + 3));
                                bounds.push(start);
                            }
                        }
                    }
                    let condition = condition.join(" OR ");
                    // A counter without a row has counted nothing: only a range holding index 0 may create it.
                    let first_call_allowed = ranges.iter().any(|r| r.start == 0 && r.end != Some(0));
                    let sql = if first_call_allowed {
                        format!(
                            "INSERT INTO call_counters (counter, period_start, calls) VALUES ($1, $2, 1) \
                             ON CONFLICT (counter, period_start) DO UPDATE SET calls = call_counters.calls + 1 \
                             WHERE {condition} RETURNING calls"
                        )
                    } else {
                        format!(
                            "UPDATE call_counters SET calls = calls + 1 WHERE counter = $1 AND period_start = $2 \
                             AND ({condition}) RETURNING calls"
                        )
                    };
                    // Only placeholders are formatted into the text; every value is bound.
                    let mut query =
                        sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql)).bind(counter).bind(period_start);
                    for bound in bounds {
                        query = query.bind(bound);
                    }
                    let counted = query.fetch_optional(&self.pool).await.map_err(unavailable)?;
                    Ok(counted.map(|calls| calls.max(1) as u64 - 1))
                }

                async fn uncount_call(&self, counter: &str, period_start: i64) -> Result<(), StoreError> {
                    sqlx::query(
                        "UPDATE call_counters SET calls = calls - 1 WHERE counter = $1 AND period_start = $2 AND calls > 0",
                    )
                    .bind(counter)
                    .bind(period_start)
                    .execute(&self.pool)
                    .await
                    .map_err(unavailable)?;
                    Ok(())
                }

                async fn calls(&self, counter: &str, period_start: i64) -> Result<u64, StoreError> {
                    let calls: Option<i64> =
                        sqlx::query_scalar("SELECT calls FROM call_counters WHERE counter = $1 AND period_start = $2")
                            .bind(counter)
                            .bind(period_start)
                            .fetch_optional(&self.pool)
                            .await
                            .map_err(unavailable)?;
                    Ok(calls.unwrap_or(0).max(0) as u64)
                }

                async fn identify(&self, key: &str, payload_digest: &str) -> Result<Identified, StoreError> {
                    let inserted: Option<String> = sqlx::query_scalar(
                        "INSERT INTO payment_identifiers (key, payload_digest, created_at_ms) VALUES ($1, $2, $3) \
                         ON CONFLICT DO NOTHING RETURNING key",
                    )
                    .bind(key)
                    .bind(payload_digest)
                    .bind(now_ms())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(unavailable)?;
                    if inserted.is_some() {
                        return Ok(Identified::New);
                    }
                    let row = sqlx::query(
                        "SELECT payload_digest, answered, status, headers, body FROM payment_identifiers WHERE key = $1",
                    )
                    .bind(key)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(unavailable)?;
                    // Forgotten between the insert and the read: the next request starts it afresh.
                    let Some(row) = row else { return Ok(Identified::InProgress) };
                    if row.get::<String, _>("payload_digest") != payload_digest {
                        return Ok(Identified::Conflict);
                    }
                    if row.get::<i64, _>("answered") == 0 {
                        return Ok(Identified::InProgress);
                    }
                    let corrupt = |what: &str| StoreError::corrupt(format!("payment identifier {key}: {what}"));
                    let status = row.get::<Option<i64>, _>("status").and_then(|s| u16::try_from(s).ok());
                    let headers: Option<String> = row.get("headers");
                    let headers = headers
                        .as_deref()
                        .map(serde_json::from_str::<Vec<(String, String)>>)
                        .transpose()
                        .map_err(|_| corrupt("headers"))?;
                    Ok(Identified::Answered(KeptAnswer {
                        status: status.ok_or_else(|| corrupt("status"))?,
                        headers: headers.unwrap_or_default(),
                        body: row.get("body"),
                    }))
                }

                async fn keep_answer(&self, key: &str, answer: &KeptAnswer) -> Result<(), StoreError> {
                    // Plain strings always serialize.
                    let headers = serde_json::to_string(&answer.headers).expect("headers serialize");
                    sqlx::query(
                        "UPDATE payment_identifiers SET answered = 1, status = $2, headers = $3, body = $4 WHERE key = $1",
                    )
                    .bind(key)
                    .bind(i64::from(answer.status))
                    .bind(headers)
                    .bind(answer.body.as_deref())
                    .execute(&self.pool)
                    .await
                    .map_err(unavailable)?;
                    Ok(())
                }

                async fn forget_identifier(&self, key: &str) -> Result<(), StoreError> {
                    sqlx::query("DELETE FROM payment_identifiers WHERE key = $1")
                        .bind(key)
                        .execute(&self.pool)
                        .await
                        .map_err(unavailable)?;
                    Ok(())
                }

                async fn expire_identifiers(&self, answered_before_ms: i64, unanswered_before_ms: i64) -> Result<u64, StoreError> {
                    let done = sqlx::query(
                        "DELETE FROM payment_identifiers WHERE (answered = 1 AND created_at_ms < $1) \
                         OR (answered = 0 AND created_at_ms < $2)",
                    )
                    .bind(answered_before_ms)
                    .bind(unanswered_before_ms)
                    .execute(&self.pool)
                    .await
                    .map_err(unavailable)?;
                    Ok(done.rows_affected())
                }

                async fn take_rate(
                    &self,
                    key: &str,
                    now_ms: i64,
                    interval_ms: i64,
                    window_ms: i64,
                ) -> Result<Option<i64>, StoreError> {
                    // GCRA: a request arriving at `now` moves the theoretical arrival time to max(tat, now) +
                    // interval, allowed while that stays within `window` of now. (CASE, not max/GREATEST: the one
                    // spelling both databases share.)
                    let taken: Option<i64> = sqlx::query_scalar(
                        "INSERT INTO rate_limits (key, tat_ms) VALUES ($1, $2 + $3) ON CONFLICT (key) DO UPDATE \
                         SET tat_ms = (CASE WHEN rate_limits.tat_ms > $2 THEN rate_limits.tat_ms ELSE $2 END) + $3 \
                         WHERE (CASE WHEN rate_limits.tat_ms > $2 THEN rate_limits.tat_ms ELSE $2 END) + $3 - $2 <= $4 \
                         RETURNING tat_ms",
                    )
                    .bind(key)
                    .bind(now_ms)
                    .bind(interval_ms)
                    .bind(window_ms)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(unavailable)?;
                    if taken.is_some() {
                        return Ok(None);
                    }
                    let tat: Option<i64> = sqlx::query_scalar("SELECT tat_ms FROM rate_limits WHERE key = $1")
                        .bind(key)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(unavailable)?;
                    Ok(Some(tat.map_or(0, |tat| tat + interval_ms - window_ms - now_ms).max(0)))
                }

                async fn forget_full_rates(&self, now_ms: i64) -> Result<u64, StoreError> {
                    let done = sqlx::query("DELETE FROM rate_limits WHERE tat_ms < $1")
                        .bind(now_ms)
                        .execute(&self.pool)
                        .await
                        .map_err(unavailable)?;
                    Ok(done.rows_affected())
                }

                async fn payment(&self, id: PaymentId) -> Result<Option<PaymentRecord>, StoreError> {
                    let sql = format!("SELECT {RECORD_COLUMNS} FROM payments WHERE id = $1");
                    let row =
                        sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(&self.pool).await.map_err(unavailable)?;
                    row.as_ref().map(record).transpose()
                }

                async fn payments(&self, q: &PaymentQuery) -> Result<Vec<PaymentRecord>, StoreError> {
                    let sql = format!(
                        "SELECT {RECORD_COLUMNS} FROM payments WHERE (CAST($1 AS TEXT) IS NULL OR state = $1) \
                         AND (CAST($2 AS TEXT) IS NULL OR lower(payer) = lower($2)) \
                         AND (CAST($3 AS TEXT) IS NULL OR route = $3) \
                         AND (CAST($6 AS BIGINT) IS NULL OR updated_at_ms < $6) \
                         AND (CAST($7 AS BIGINT) = 0 OR recheck = 1) ORDER BY id DESC LIMIT $4 OFFSET $5"
                    );
                    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(q.state.map(PaymentState::as_str))
                        .bind(q.payer.as_deref())
                        .bind(q.route.as_deref())
                        .bind(i64::from(q.limit.unwrap_or(u32::MAX)))
                        .bind(i64::from(q.offset.unwrap_or(0)))
                        .bind(q.updated_before_ms)
                        .bind(i64::from(q.recheck))
                        .fetch_all(&self.pool)
                        .await
                        .map_err(unavailable)?;
                    rows.iter().map(record).collect()
                }

                async fn events(&self, id: PaymentId) -> Result<Vec<PaymentEvent>, StoreError> {
                    let rows = sqlx::query(
                        "SELECT at_ms, from_state, to_state, reason FROM payment_events WHERE payment_id = $1 ORDER BY id",
                    )
                    .bind(id)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(unavailable)?;
                    rows.iter()
                        .map(|row| {
                            Ok(PaymentEvent {
                                at_ms: row.get("at_ms"),
                                from_state: row.get::<Option<String>, _>("from_state").map(|s| s.parse()).transpose()?,
                                to_state: row.get::<String, _>("to_state").parse()?,
                                reason: row.get("reason"),
                            })
                        })
                        .collect()
                }
            }
        }
    };
}

pub(crate) use impl_store;
