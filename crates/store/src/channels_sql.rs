//! The channel book ([`paygate_core::channel::ChannelBook`]) both backends share, as a macro each backend module
//! expands over its own pool, like `ledger_sql.rs`. A channel's row changes only by compare-and-swap on its
//! `version`: the caller computes the next state from what it read, and the update applies only if nobody wrote
//! in between. The journal of channel transactions (`channel_transactions`) is written in the same store
//! transaction as the channel change that goes with it.

/// Expands `impl ChannelBook for $store` (whose `pool` field is a pool of `$db`).
macro_rules! impl_channel_book {
    ($store:ident, $db:ty) => {
        mod channel_book {
            use async_trait::async_trait;
            use paygate_core::channel::{Channel, ChannelBook, ChannelBookError};
            use paygate_core::channel_journal::{ChannelTransaction, TransactionKind, TransactionState};
            use sqlx::Row as _;

            use crate::now_ms;
            use crate::statement::{Statement, in_flight_json, settleable_json};

            const COLUMNS: &str = "id, network, option_name, payer, receiver, token, config, deposit, claimed, \
                                   charged, voucher_max, voucher_signature, version, updated_at_ms, in_flight, settleable";

            fn unavailable(e: sqlx::Error) -> ChannelBookError {
                ChannelBookError(Box::new(e))
            }

            fn corrupt(what: String) -> ChannelBookError {
                ChannelBookError(Box::new(crate::StoreError::corrupt(what)))
            }

            fn amount(row: &<$db as sqlx::Database>::Row, column: &str) -> Result<u128, ChannelBookError> {
                let text: String = row.try_get(column).map_err(unavailable)?;
                text.parse().map_err(|_| corrupt(format!("channel {column} {text:?} is not an amount")))
            }

            /// The compare-and-swap every change of a channel is, inside a store transaction.
            async fn swap<'e, E>(executor: E, expected: i64, c: &Channel) -> Result<bool, ChannelBookError>
            where
                E: sqlx::Executor<'e, Database = $db>,
            {
                let swap = Statement::swap_channel(expected, c, now_ms());
                let updated = swap.query::<$db>().execute(executor).await.map_err(unavailable)?;
                Ok(updated.rows_affected() == 1)
            }

            fn transaction(row: &<$db as sqlx::Database>::Row) -> Result<ChannelTransaction, ChannelBookError> {
                let text = |column: &str| row.try_get::<String, _>(column).map_err(unavailable);
                let (kind, state, channel) = (text("kind")?, text("state")?, text("channel_id")?);
                Ok(ChannelTransaction {
                    hash: text("hash")?,
                    option: text("option_name")?,
                    kind: TransactionKind::parse(&kind)
                        .ok_or_else(|| corrupt(format!("channel transaction kind {kind:?}")))?,
                    channel: (!channel.is_empty()).then_some(channel),
                    amount: amount(row, "amount")?,
                    raw: text("raw")?,
                    state: TransactionState::parse(&state)
                        .ok_or_else(|| corrupt(format!("channel transaction state {state:?}")))?,
                    created_at_ms: row.try_get("created_at_ms").map_err(unavailable)?,
                })
            }

            fn channel(row: &<$db as sqlx::Database>::Row) -> Result<Channel, ChannelBookError> {
                let text = |column: &str| row.try_get::<String, _>(column).map_err(unavailable);
                let config = text("config")?;
                Ok(Channel {
                    id: text("id")?,
                    network: text("network")?,
                    option: text("option_name")?,
                    payer: text("payer")?,
                    receiver: text("receiver")?,
                    token: text("token")?,
                    config: serde_json::from_str(&config)
                        .map_err(|_| corrupt(format!("channel config {config:?} is not JSON")))?,
                    deposit: amount(row, "deposit")?,
                    claimed: amount(row, "claimed")?,
                    charged: amount(row, "charged")?,
                    voucher_max: amount(row, "voucher_max")?,
                    voucher_signature: text("voucher_signature")?,
                    version: row.try_get("version").map_err(unavailable)?,
                    updated_at_ms: row.try_get("updated_at_ms").map_err(unavailable)?,
                    in_flight: {
                        let text = text("in_flight")?;
                        serde_json::from_str(&text)
                            .map_err(|_| corrupt(format!("channel in_flight {text:?} is not a map of amounts")))?
                    },
                    settleable: match text("settleable")?.as_str() {
                        "" => None,
                        text => Some(
                            serde_json::from_str(text)
                                .map_err(|_| corrupt(format!("channel settleable {text:?} is not a voucher")))?,
                        ),
                    },
                })
            }

            #[async_trait]
            impl ChannelBook for super::$store {
                async fn channel(&self, id: &str) -> Result<Option<Channel>, ChannelBookError> {
                    let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM channels WHERE id = $1")))
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(unavailable)?;
                    row.as_ref().map(channel).transpose()
                }

                async fn open_channel(&self, c: &Channel) -> Result<bool, ChannelBookError> {
                    let now = now_ms();
                    // Only the constant column list is formatted in; every value is bound.
                    let inserted = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "INSERT INTO channels ({COLUMNS}, unclaimed, created_at_ms) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $15, $16, $17, $14, $15) \
                         ON CONFLICT (id) DO NOTHING"
                    )))
                    .bind(&c.id)
                    .bind(&c.network)
                    .bind(&c.option)
                    .bind(&c.payer)
                    .bind(&c.receiver)
                    .bind(&c.token)
                    .bind(c.config.to_string())
                    .bind(c.deposit.to_string())
                    .bind(c.claimed.to_string())
                    .bind(c.charged.to_string())
                    .bind(c.voucher_max.to_string())
                    .bind(&c.voucher_signature)
                    .bind(c.version)
                    .bind(i64::from(c.unclaimed() > 0))
                    .bind(now)
                    .bind(in_flight_json(c))
                    .bind(settleable_json(c))
                    .execute(&self.pool)
                    .await
                    .map_err(unavailable)?;
                    Ok(inserted.rows_affected() == 1)
                }

                async fn swap_channel(&self, expected: i64, c: &Channel) -> Result<bool, ChannelBookError> {
                    let swap = Statement::swap_channel(expected, c, now_ms());
                    let written = self.write(&swap).await.map_err(|e| ChannelBookError(Box::new(e)))?;
                    Ok(written == 1)
                }

                async fn journal_transaction(
                    &self,
                    t: &ChannelTransaction,
                    channel_swap: Option<(i64, &Channel)>,
                ) -> Result<bool, ChannelBookError> {
                    let mut tx = self.pool.begin().await.map_err(unavailable)?;
                    if let Some((expected, next)) = channel_swap
                        && !swap(&mut *tx, expected, next).await?
                    {
                        return Ok(false); // Dropping the transaction rolls it back.
                    }
                    sqlx::query(
                        "INSERT INTO channel_transactions \
                         (hash, option_name, kind, channel_id, amount, raw, state, created_at_ms) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    )
                    .bind(&t.hash)
                    .bind(&t.option)
                    .bind(t.kind.as_str())
                    .bind(t.channel.as_deref().unwrap_or(""))
                    .bind(t.amount.to_string())
                    .bind(&t.raw)
                    .bind(t.state.as_str())
                    .bind(t.created_at_ms)
                    .execute(&mut *tx)
                    .await
                    .map_err(unavailable)?;
                    tx.commit().await.map_err(unavailable)?;
                    Ok(true)
                }

                async fn decide_transaction(
                    &self,
                    hash: &str,
                    state: TransactionState,
                    channel_swap: Option<(i64, &Channel)>,
                ) -> Result<bool, ChannelBookError> {
                    let mut tx = self.pool.begin().await.map_err(unavailable)?;
                    let decided = sqlx::query(
                        "UPDATE channel_transactions SET state = $1, decided_at_ms = $2 \
                         WHERE hash = $3 AND state = 'sent'",
                    )
                    .bind(state.as_str())
                    .bind(now_ms())
                    .bind(hash)
                    .execute(&mut *tx)
                    .await
                    .map_err(unavailable)?;
                    if decided.rows_affected() != 1 {
                        return Ok(false);
                    }
                    if let Some((expected, next)) = channel_swap
                        && !swap(&mut *tx, expected, next).await?
                    {
                        return Ok(false);
                    }
                    tx.commit().await.map_err(unavailable)?;
                    Ok(true)
                }

                async fn channel_transactions(&self, limit: u32) -> Result<Vec<ChannelTransaction>, ChannelBookError> {
                    let rows = sqlx::query(
                        "SELECT hash, option_name, kind, channel_id, amount, raw, state, created_at_ms \
                         FROM channel_transactions ORDER BY created_at_ms DESC LIMIT $1",
                    )
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(unavailable)?;
                    rows.iter().map(transaction).collect()
                }

                async fn undecided_transactions(
                    &self,
                    option: &str,
                ) -> Result<Vec<ChannelTransaction>, ChannelBookError> {
                    let rows = sqlx::query(
                        "SELECT hash, option_name, kind, channel_id, amount, raw, state, created_at_ms \
                         FROM channel_transactions WHERE option_name = $1 AND state = 'sent' ORDER BY created_at_ms",
                    )
                    .bind(option)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(unavailable)?;
                    rows.iter().map(transaction).collect()
                }

                async fn channels(&self, limit: u32) -> Result<Vec<Channel>, ChannelBookError> {
                    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "SELECT {COLUMNS} FROM channels ORDER BY updated_at_ms DESC LIMIT $1"
                    )))
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(unavailable)?;
                    rows.iter().map(channel).collect()
                }

                async fn payer_channels(&self, payer: &str, option: &str) -> Result<Vec<Channel>, ChannelBookError> {
                    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "SELECT {COLUMNS} FROM channels WHERE payer = $1 AND option_name = $2"
                    )))
                    .bind(payer)
                    .bind(option)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(unavailable)?;
                    rows.iter().map(channel).collect()
                }

                async fn unclaimed_channels(&self, limit: u32) -> Result<Vec<Channel>, ChannelBookError> {
                    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "SELECT {COLUMNS} FROM channels WHERE unclaimed = 1 ORDER BY updated_at_ms LIMIT $1"
                    )))
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(unavailable)?;
                    rows.iter().map(channel).collect()
                }
            }
        }
    };
}

pub(crate) use impl_channel_book;
