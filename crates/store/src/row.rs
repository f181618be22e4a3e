//! One ledger row as both backends read it: the columns, and the conversion from a database row (the schemas
//! are the same, in each database's types).

use sqlx::{ColumnIndex, Decode, Row, Type};

use crate::{PaymentRecord, StoreError};

pub(crate) const RECORD_COLUMNS: &str = "id, proof_key, challenge_id, state, created_at_ms, updated_at_ms, request_id, route, \
     protocol, rail, option_name, network, asset, asset_symbol, decimals, amount, payer, pay_to, tx_hash, \
     upstream_status, settlement, reason, response_owed, recheck";

pub(crate) fn record<'r, R>(row: &'r R) -> Result<PaymentRecord, StoreError>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    Option<String>: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    Option<i64>: Decode<'r, R::Database> + Type<R::Database>,
{
    let corrupt = |e: sqlx::Error| StoreError::corrupt_because("a payment row", e);
    let settlement: String = row.try_get("settlement").map_err(corrupt)?;
    let upstream_status: Option<i64> = row.try_get("upstream_status").map_err(corrupt)?;
    let decimals: i64 = row.try_get("decimals").map_err(corrupt)?;
    Ok(PaymentRecord {
        id: row.try_get("id").map_err(corrupt)?,
        proof_key: row.try_get("proof_key").map_err(corrupt)?,
        challenge_id: row.try_get("challenge_id").map_err(corrupt)?,
        state: row.try_get::<String, _>("state").map_err(corrupt)?.parse()?,
        created_at_ms: row.try_get("created_at_ms").map_err(corrupt)?,
        updated_at_ms: row.try_get("updated_at_ms").map_err(corrupt)?,
        request_id: row.try_get("request_id").map_err(corrupt)?,
        route: row.try_get("route").map_err(corrupt)?,
        protocol: row.try_get("protocol").map_err(corrupt)?,
        rail: row.try_get("rail").map_err(corrupt)?,
        option_name: row.try_get("option_name").map_err(corrupt)?,
        network: row.try_get("network").map_err(corrupt)?,
        asset: row.try_get("asset").map_err(corrupt)?,
        asset_symbol: row.try_get("asset_symbol").map_err(corrupt)?,
        decimals: u8::try_from(decimals)
            .map_err(|_| StoreError::corrupt(format!("decimals {decimals} out of range")))?,
        amount: row.try_get("amount").map_err(corrupt)?,
        payer: row.try_get("payer").map_err(corrupt)?,
        pay_to: row.try_get("pay_to").map_err(corrupt)?,
        tx_hash: row.try_get("tx_hash").map_err(corrupt)?,
        upstream_status: upstream_status.and_then(|s| u16::try_from(s).ok()),
        settlement: serde_json::from_str(&settlement)
            .map_err(|e| StoreError::corrupt_because("a payment's settlement", e))?,
        reason: row.try_get("reason").map_err(corrupt)?,
        response_owed: row.try_get::<i64, _>("response_owed").map_err(corrupt)? != 0,
        recheck: row.try_get::<i64, _>("recheck").map_err(corrupt)? != 0,
    })
}
