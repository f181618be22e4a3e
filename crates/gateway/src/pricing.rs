//! Prices computed from the request before it runs: a route's `price` per byte of the body, per character of a
//! JSON string field, per item of a JSON array field, or per second or started minute of a duration in a JSON
//! field or query parameter, between an optional minimum and maximum.
//!
//! Every amount stays exact: the unit price and the bounds are converted to each option's atomic units once, at
//! config load (refused there when an asset cannot represent them), and a request's amount is the unit amount
//! times a whole number of units, clamped. The 402 states that amount; the challenge binds it and the body's
//! digest, so a credential pays exactly that price for exactly that request.

use paygate_core::money::{AtomicAmount, Decimal};
use paygate_core::reject::{RejectKind, Rejection};
use serde_json::Value;

use crate::config::PriceUnit;
use crate::offers::RouteOffer;

/// Where a request's quantity is read.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    Body,
    /// Object keys from the top of the JSON body (`$.a.b` is `["a", "b"]`), and the path as written, for errors.
    Field {
        keys: Vec<String>,
        path: String,
    },
    Query(String),
}

/// The least and the most a request may cost in one option, in its atomic units.
pub(crate) type Bounds = (Option<AtomicAmount>, Option<AtomicAmount>);

/// How a per-unit route counts a request, and the bounds of its amount in each offer's atomic units (aligned
/// with the route's unit-price offers).
#[derive(Debug, Clone)]
pub(crate) struct UnitPricing {
    unit: PriceUnit,
    source: Source,
    bounds: Vec<Bounds>,
}

fn unpriceable(reason: &'static str, detail: String) -> Rejection {
    Rejection::new(RejectKind::UnpriceableRequest, reason, detail)
}

impl UnitPricing {
    /// The rule for `unit` counted in `field` (`$.input`) or `query`; errors name what is wrong.
    pub(crate) fn new(unit: PriceUnit, field: Option<&str>, query: Option<&str>) -> Result<UnitPricing, String> {
        let source = match (unit, field, query) {
            (PriceUnit::Byte, None, None) => Source::Body,
            (PriceUnit::Byte, _, _) => return Err("`per = \"byte\"` counts the body: give no field or query".into()),
            (_, Some(_), Some(_)) => return Err("give `field` or `query`, not both".into()),
            (PriceUnit::Character | PriceUnit::Item, None, Some(_)) => {
                return Err("characters and items are counted in a JSON `field`".into());
            }
            (_, Some(path), None) => {
                let keys: Vec<String> = path
                    .strip_prefix("$.")
                    .ok_or("`field` is a JSON path like \"$.input\"")?
                    .split('.')
                    .map(str::to_owned)
                    .collect();
                if keys.iter().any(String::is_empty) {
                    return Err(format!("`field` {path:?} has an empty key"));
                }
                Source::Field { keys, path: path.to_owned() }
            }
            (_, None, Some(name)) => Source::Query(name.to_owned()),
            (_, None, None) => return Err("this unit needs a `field` (or, for seconds and minutes, a `query`)".into()),
        };
        Ok(UnitPricing { unit, source, bounds: Vec::new() })
    }

    /// Sets the minimum and maximum amount of each offer, in the order of the route's offers.
    pub(crate) fn with_bounds(mut self, bounds: Vec<Bounds>) -> Self {
        self.bounds = bounds;
        self
    }

    /// How many units `body` (with `query`, the request's query string) is.
    pub(crate) fn quantity(&self, query: Option<&str>, body: &[u8]) -> Result<u128, Rejection> {
        match &self.source {
            Source::Body => Ok(body.len() as u128),
            Source::Query(name) => {
                let text = form_urlencoded::parse(query.unwrap_or("").as_bytes())
                    .find(|(key, _)| key == name)
                    .map(|(_, value)| value)
                    .ok_or_else(|| {
                        unpriceable("price_field_missing", format!("the query parameter {name:?} is missing"))
                    })?;
                self.seconds(&text, name)
            }
            Source::Field { keys, path } => {
                let json: Value = serde_json::from_slice(body).map_err(|_| {
                    unpriceable("body_not_json", "the price depends on the JSON body, and it is not JSON".into())
                })?;
                let value = keys
                    .iter()
                    .try_fold(&json, |value, key| value.get(key))
                    .filter(|v| !v.is_null())
                    .ok_or_else(|| unpriceable("price_field_missing", format!("the field {path} is missing")))?;
                let malformed = |what: &str| unpriceable("price_field_malformed", format!("{path} must be {what}"));
                match (self.unit, value) {
                    (PriceUnit::Character, Value::String(s)) => Ok(s.chars().count() as u128),
                    (PriceUnit::Character, _) => Err(malformed("a string")),
                    (PriceUnit::Item, Value::Array(items)) => Ok(items.len() as u128),
                    (PriceUnit::Item, _) => Err(malformed("an array")),
                    (PriceUnit::Second | PriceUnit::Minute, Value::Number(n)) => self.seconds(&n.to_string(), path),
                    (PriceUnit::Second | PriceUnit::Minute, _) => Err(malformed("a non-negative number of seconds")),
                    // `new` gives bytes no field; the body is what they count.
                    (PriceUnit::Byte, _) => Ok(body.len() as u128),
                }
            }
        }
    }

    /// Seconds written as `text` (a non-negative decimal), counted in this rule's unit: whole seconds rounded
    /// up, or started minutes.
    fn seconds(&self, text: &str, name: &str) -> Result<u128, Rejection> {
        let seconds = Decimal::parse(text.trim()).map_err(|_| {
            unpriceable("price_field_malformed", format!("{name} must be a non-negative number of seconds"))
        })?;
        let divisor = 10u128
            .checked_pow(seconds.scale)
            .ok_or_else(|| unpriceable("price_field_malformed", format!("{name} has too many decimals")))?;
        let whole = seconds.digits.div_ceil(divisor);
        Ok(if self.unit == PriceUnit::Minute { whole.div_ceil(60) } else { whole })
    }

    /// The offers for `quantity` units: each unit-price offer's amount times `quantity`, within its bounds.
    /// Offers whose rail cannot charge that amount are left out. None at all when the request costs nothing (no
    /// units and no minimum): it is served free.
    pub(crate) fn offers(&self, unit_offers: &[RouteOffer], quantity: u128) -> Result<Vec<RouteOffer>, Rejection> {
        if quantity == 0 && self.bounds.iter().all(|(min, _)| min.is_none_or(|m| m.0 == 0)) {
            return Ok(Vec::new());
        }
        let mut offers = Vec::with_capacity(unit_offers.len());
        for (i, unit) in unit_offers.iter().enumerate() {
            let (min, max) = self.bounds.get(i).copied().unwrap_or_default();
            let mut amount = unit.amount.0.checked_mul(quantity).map(AtomicAmount);
            if let (Some(max), Some(a)) = (max, amount) {
                amount = Some(a.min(max));
            }
            // Over every representable amount, only a maximum can bound it.
            let amount = match (amount, max) {
                (Some(a), _) => a,
                (None, Some(max)) => max,
                (None, None) => {
                    return Err(unpriceable("price_too_large", format!("{quantity} units cost more than can be paid")));
                }
            };
            let amount = min.map_or(amount, |min| amount.max(min));
            let offer = RouteOffer::new(unit.method.clone(), amount);
            if offer.can_be_paid() {
                offers.push(offer);
            }
        }
        if offers.is_empty() {
            return Err(unpriceable(
                "price_below_minimum",
                format!("{quantity} units cost less than any payment option can charge"),
            ));
        }
        Ok(offers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(unit: PriceUnit, field: Option<&str>, query: Option<&str>) -> UnitPricing {
        UnitPricing::new(unit, field, query).unwrap()
    }

    #[test]
    fn quantities_are_counted_exactly_at_the_boundaries() {
        let bytes = rule(PriceUnit::Byte, None, None);
        assert_eq!(bytes.quantity(None, b"").unwrap(), 0);
        assert_eq!(bytes.quantity(None, b"hello").unwrap(), 5);
        let chars = rule(PriceUnit::Character, Some("$.input"), None);
        assert_eq!(chars.quantity(None, br#"{"input":""}"#).unwrap(), 0);
        // Characters, not bytes: "é" is one, two bytes in UTF-8.
        assert_eq!(chars.quantity(None, "{\"input\":\"h\u{e9}llo\"}".as_bytes()).unwrap(), 5);
        let nested = rule(PriceUnit::Item, Some("$.batch.items"), None);
        assert_eq!(nested.quantity(None, br#"{"batch":{"items":[1,2,3]}}"#).unwrap(), 3);
        let seconds = rule(PriceUnit::Second, Some("$.duration_seconds"), None);
        assert_eq!(seconds.quantity(None, br#"{"duration_seconds":0}"#).unwrap(), 0);
        assert_eq!(seconds.quantity(None, br#"{"duration_seconds":12.25}"#).unwrap(), 13);
        let minutes = rule(PriceUnit::Minute, None, Some("duration_seconds"));
        assert_eq!(minutes.quantity(Some("duration_seconds=60"), b"").unwrap(), 1);
        assert_eq!(minutes.quantity(Some("a=1&duration_seconds=61"), b"").unwrap(), 2);
        assert_eq!(minutes.quantity(Some("duration_seconds=0"), b"").unwrap(), 0);
    }

    #[test]
    fn missing_and_malformed_fields_are_400_problems_naming_the_field() {
        let chars = rule(PriceUnit::Character, Some("$.input"), None);
        let reason = |r: Result<u128, Rejection>| {
            let r = r.unwrap_err();
            assert_eq!(r.kind.status(), 400);
            (r.reason, r.detail)
        };
        assert_eq!(reason(chars.quantity(None, b"not json")).0, "body_not_json");
        assert_eq!(reason(chars.quantity(None, b"{}")), ("price_field_missing", "the field $.input is missing".into()));
        assert_eq!(reason(chars.quantity(None, br#"{"input":null}"#)).0, "price_field_missing");
        assert_eq!(
            reason(chars.quantity(None, br#"{"input":7}"#)),
            ("price_field_malformed", "$.input must be a string".into())
        );
        let seconds = rule(PriceUnit::Second, Some("$.d"), None);
        assert_eq!(reason(seconds.quantity(None, br#"{"d":-1}"#)).0, "price_field_malformed");
        assert_eq!(reason(seconds.quantity(None, br#"{"d":"10"}"#)).0, "price_field_malformed");
        let query = rule(PriceUnit::Second, None, Some("d"));
        assert_eq!(reason(query.quantity(Some("x=1"), b"")).0, "price_field_missing");
        assert_eq!(reason(query.quantity(Some("d=ten"), b"")).0, "price_field_malformed");
    }

    #[test]
    fn rules_that_cannot_count_are_refused_at_load() {
        assert!(UnitPricing::new(PriceUnit::Byte, Some("$.x"), None).is_err());
        assert!(UnitPricing::new(PriceUnit::Character, None, None).is_err());
        assert!(UnitPricing::new(PriceUnit::Character, None, Some("q")).is_err());
        assert!(UnitPricing::new(PriceUnit::Second, Some("$.a"), Some("a")).is_err());
        assert!(UnitPricing::new(PriceUnit::Item, Some("input"), None).is_err());
        assert!(UnitPricing::new(PriceUnit::Item, Some("$.a..b"), None).is_err());
    }
}
