//! `[[routes]]`: one route of the upstream API, as the file has it ([`RouteConfig`]) and checked
//! ([`RouteSpec`]): its method and path pattern parsed, its prices parsed exactly, and how it charges reduced to
//! one rule ([`PriceSpec`]) with at most one kind of free calls ([`FreeSpec`]). The combinations the file can
//! express but a route cannot mean (`price` with `tiers`, free calls on a free route, free calls per payer on a
//! tiered route, per-unit fields without `per`) are refused here, naming the field.

use std::time::Duration;

use http::Method;
use paygate_core::money::Price;
use serde::{Deserialize, Serialize};

use crate::offers::ResourceText;
use crate::pricing::UnitPricing;
use crate::routes::{PathPattern, RouteMatcher};
use crate::usage::IpQuota;

/// A config error in a route: the field's path and what is wrong.
pub(crate) type RouteError = (String, String);

/// One route of the upstream API.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// HTTP method, or absent for any.
    #[serde(default)]
    pub method: Option<String>,
    /// `/exact`, `/items/{id}` (one segment), `/files/*` (the rest).
    pub path: String,
    /// Makes the route one tool of the MCP server (streamable HTTP) at `path`: it prices the JSON-RPC
    /// `tools/call` of this tool name, and everything else sent to `path` passes free (see `crate::mcp`).
    #[serde(default)]
    pub tool: Option<String>,
    /// `"$0.01"` or `"0.5 USDC"`; absent for a free route.
    #[serde(default)]
    pub price: Option<String>,
    /// Option names this route accepts; all when absent.
    #[serde(default)]
    pub accept: Option<Vec<String>>,
    /// Settle after the upstream answered (default, never charges for a failed call) or before proxying.
    #[serde(default)]
    pub settle: SettleTiming,
    #[serde(default)]
    pub description: Option<String>,
    /// Media type of the response, for x402's `resource.mimeType`.
    #[serde(default)]
    pub mime_type: Option<String>,
    /// Makes `price` a price per unit of the request, counted before it runs.
    #[serde(default)]
    pub per: Option<PriceUnit>,
    /// The JSON field of the body the units are counted in (`$.input`), for `character`, `item`, `second`,
    /// `minute`.
    #[serde(default)]
    pub field: Option<String>,
    /// The query parameter holding the seconds, for `second` and `minute` (instead of `field`).
    #[serde(default)]
    pub query: Option<String>,
    /// The least a request of a per-unit route costs.
    #[serde(default)]
    pub min_price: Option<String>,
    /// The most a request of a per-unit route costs.
    #[serde(default)]
    pub max_price: Option<String>,
    /// Also serve `Authorization: Bearer <key>` for the keys of `paygate keys create`, metering each call.
    #[serde(default)]
    pub api_keys: bool,
    /// Calls served free per client IP or per payer in each `period`, before payment is asked.
    #[serde(default)]
    pub free_calls: Option<u64>,
    /// Whom `free_calls` are counted for (default: the client IP).
    #[serde(default)]
    pub free_per: Option<FreePer>,
    /// The calendar period (UTC) calls are counted in, for `free_calls` and `tiers` (default: a day).
    #[serde(default)]
    pub period: Option<Period>,
    /// The price of a call by how many calls its payer made on the route in the period (instead of `price`).
    #[serde(default)]
    pub tiers: Option<Vec<TierConfig>>,
    /// An HTTP service that prices each request (instead of `price`).
    #[serde(default)]
    pub price_hook: Option<PriceHookConfig>,
    /// Prices each call by what its response says it used (instead of `price`), up to `max_price`, which the 402
    /// quotes.
    #[serde(default)]
    pub meter: Option<MeterConfig>,
    /// How the route describes itself to agents that discover it: the x402 `bazaar` extension of its 402,
    /// `/openapi.json` (see `crate::discovery`).
    #[serde(default)]
    pub discovery: Option<DiscoveryConfig>,
}

/// What a route tells agents about itself, beyond its price: an example request and answer.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DiscoveryConfig {
    /// An example request: its query parameters (GET, HEAD, DELETE) or its body (POST, PUT, PATCH).
    #[serde(default)]
    pub input: Option<serde_json::Value>,
    /// The JSON Schema of that input (`{ properties = { ... } }`).
    #[serde(default)]
    pub input_schema: Option<serde_json::Value>,
    /// How a body is sent: `json` (default), `form-data` or `text`.
    #[serde(default)]
    pub body_type: Option<String>,
    /// An example answer.
    #[serde(default)]
    pub output: Option<serde_json::Value>,
}

/// How a route priced by its response counts what a call used.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MeterConfig {
    /// What is counted: `tokens` (an OpenAI-compatible `usage` object: `prompt_tokens`, `completion_tokens`),
    /// `header` (a number in the response header `header`), `bytes` (of the response body), `events` (the
    /// server-sent events of a `text/event-stream` answer, `[DONE]` aside).
    pub usage: MeterUsage,
    /// `tokens`: the price of one prompt token.
    #[serde(default)]
    pub input_price: Option<String>,
    /// `tokens`: the price of one completion token.
    #[serde(default)]
    pub output_price: Option<String>,
    /// `header`, `bytes`, `events`: the price of one unit.
    #[serde(default)]
    pub unit_price: Option<String>,
    /// `header`: the response header that holds the count.
    #[serde(default)]
    pub header: Option<String>,
    /// How long a stream paid as it is delivered waits for the payer's next voucher before it ends (charging
    /// what was delivered); seconds, 1 to 600.
    #[serde(default = "default_voucher_wait_secs")]
    pub voucher_wait_secs: u64,
}

fn default_voucher_wait_secs() -> u64 {
    30
}

/// What a route priced by its response counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MeterUsage {
    Tokens,
    Header,
    Bytes,
    Events,
}

/// Whom free calls are counted for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FreePer {
    /// The client's address (the TCP peer): no payment is asked while it has free calls left.
    #[default]
    Ip,
    /// The payer's address, known from a verified payment that is then not settled.
    Payer,
}

/// A calendar period in UTC.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    Hour,
    #[default]
    Day,
    /// From Monday 00:00 UTC.
    Week,
    Month,
}

/// One step of a route's usage tiers.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TierConfig {
    /// How many calls of the period this tier covers; absent for the last tier, which has no end.
    #[serde(default)]
    pub calls: Option<u64>,
    /// The price of each call in this tier; `"$0"` for free calls.
    pub price: String,
}

/// A pricing service paygate asks for each request's price.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PriceHookConfig {
    /// `http://` or `https://` URL that paygate POSTs the request's description to.
    pub url: String,
    /// How long paygate waits for the answer.
    #[serde(default = "default_price_hook_timeout")]
    pub timeout_ms: u64,
    /// Request headers passed on to the hook, by name.
    #[serde(default)]
    pub headers: Vec<String>,
    /// The price when the hook fails; without it, requests are refused (503) while the hook fails.
    #[serde(default)]
    pub fallback_price: Option<String>,
}

fn default_price_hook_timeout() -> u64 {
    500
}

/// What a per-unit price counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PriceUnit {
    /// Bytes of the request body.
    Byte,
    /// Characters (Unicode scalar values) of a JSON string field.
    Character,
    /// Items of a JSON array field.
    Item,
    /// Seconds, from a numeric JSON field or query parameter (a fraction counts as a whole second).
    Second,
    /// Started minutes of a number of seconds from a JSON field or query parameter.
    Minute,
}

/// When a route's payments are settled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SettleTiming {
    #[default]
    After,
    Before,
}

/// A route, checked.
#[derive(Debug, Clone)]
pub(crate) struct RouteSpec {
    /// `METHOD /pattern`, for metrics and the ledger.
    pub name: String,
    pub matcher: RouteMatcher,
    /// `None` for a free route.
    pub charge: Option<ChargeSpec>,
    pub settle: SettleTiming,
    pub resource: ResourceText,
}

/// How a priced route charges, checked.
#[derive(Debug, Clone)]
pub(crate) struct ChargeSpec {
    /// The names of the options it takes; all when `None`.
    pub options: Option<Vec<String>>,
    pub price: PriceSpec,
    pub free: Option<FreeSpec>,
    pub api_keys: bool,
}

/// The one rule a route's price follows.
#[derive(Debug, Clone)]
pub(crate) enum PriceSpec {
    Flat(Price),
    /// `price` per unit the request counts, between `min` and `max`.
    PerUnit {
        unit: UnitPricing,
        price: Price,
        min: Option<Price>,
        max: Option<Price>,
    },
    /// Prices by the payer's calls in `period`: `(calls, price)`, the last without `calls`; a zero price is free.
    Tiered {
        period: Period,
        tiers: Vec<(Option<u64>, Price)>,
    },
    /// What the response says the call used, at the meter's unit prices, up to `max` (which the 402 quotes).
    Metered {
        meter: MeterSpec,
        max: Price,
    },
    /// Asked of the operator's service; `fallback` when it fails.
    Hook {
        url: String,
        timeout: Duration,
        headers: Vec<String>,
        fallback: Option<Price>,
    },
}

/// A meter, checked: what it counts and its unit prices (`(input, output)` for tokens, the unit price twice
/// otherwise).
#[derive(Debug, Clone)]
pub(crate) struct MeterSpec {
    pub usage: MeterUsage,
    pub header: Option<http::HeaderName>,
    pub prices: (Price, Price),
    pub voucher_wait: std::time::Duration,
}

/// Calls served free before payment is asked.
#[derive(Debug, Clone)]
pub(crate) enum FreeSpec {
    PerIp(IpQuota),
    PerPayer { calls: u64, period: Period },
}

impl RouteConfig {
    /// Checks the route; `field` names its fields in errors (`routes[1].price`).
    pub(crate) fn validate(&self, field: &dyn Fn(&str) -> String) -> Result<RouteSpec, RouteError> {
        let method = match self.method.as_deref() {
            None | Some("*") => None,
            Some(m) => Some(
                Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                    .map_err(|_| (field("method"), format!("{m:?} is not an HTTP method")))?,
            ),
        };
        let pattern = PathPattern::parse(&self.path).map_err(|e| (field("path"), e.0))?;
        let charge = self.charge(field)?;
        if let Some(tool) = &self.tool {
            return self.tool_route(tool, method, pattern, charge, field);
        }
        let name = format!("{} {}", method.as_ref().map_or("*", |m| m.as_str()), self.path);
        let resource = ResourceText {
            description: self.described(),
            mime_type: self.mime_type.clone(),
            extensions: crate::discovery::extensions(method.as_ref(), self.discovered(field)?),
        };
        Ok(RouteSpec {
            name,
            matcher: RouteMatcher { method, pattern, tool: None },
            charge,
            settle: self.settle,
            resource,
        })
    }

    /// A route that prices one tool of an MCP server: a `POST` to an exact path, priced by the request (the
    /// tool's arguments), never by a response (a tool result is no HTTP answer a meter could read).
    fn tool_route(
        &self,
        tool: &str,
        method: Option<Method>,
        pattern: PathPattern,
        charge: Option<ChargeSpec>,
        field: &dyn Fn(&str) -> String,
    ) -> Result<RouteSpec, RouteError> {
        if tool.is_empty() || tool.len() > 128 || tool.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err((field("tool"), format!("{tool:?} is not a tool name")));
        }
        if method.as_ref().is_some_and(|m| m != Method::POST) {
            return Err((field("method"), "an MCP tool is called with POST: leave `method` out".into()));
        }
        if pattern.has_wildcards() {
            return Err((field("path"), "an MCP server's endpoint is one exact path (`/mcp`)".into()));
        }
        if self.meter.is_some() {
            return Err((field("meter"), "a tool's result is not metered: price the call".into()));
        }
        if charge.is_none() {
            return Err((field("tool"), "a tool route prices its tool: give a `price` (other tools pass free)".into()));
        }
        Ok(RouteSpec {
            name: format!("POST {}", crate::mcp::tool_resource(tool)),
            matcher: RouteMatcher { method: Some(Method::POST), pattern, tool: Some(tool.to_owned()) },
            charge,
            settle: self.settle,
            resource: ResourceText {
                description: self.described(),
                mime_type: self.mime_type.clone(),
                extensions: crate::discovery::tool_extensions(tool, self.discovered(field)?),
            },
        })
    }

    /// The route's discovery description, checked.
    fn discovered(&self, field: &dyn Fn(&str) -> String) -> Result<Option<&DiscoveryConfig>, RouteError> {
        let Some(discovery) = &self.discovery else { return Ok(None) };
        if let Some(kind) = discovery.body_type.as_deref().filter(|k| !matches!(*k, "json" | "form-data" | "text")) {
            return Err((field("discovery.body_type"), format!("{kind:?} is not `json`, `form-data` or `text`")));
        }
        if discovery.input_schema.as_ref().is_some_and(|s| !s.is_object()) {
            return Err((field("discovery.input_schema"), "a JSON Schema is a table".into()));
        }
        Ok(Some(discovery))
    }

    /// The resource's description; a route priced by its response says how it charges.
    fn described(&self) -> Option<String> {
        let (Some(_), Some(max)) = (&self.meter, &self.max_price) else { return self.description.clone() };
        let how = format!(
            "charged by use, at most {max} a call: channel payments pay what the call used, per-request payments \
             the maximum"
        );
        Some(match &self.description {
            Some(description) => format!("{description} ({how})"),
            None => how,
        })
    }

    /// How the route charges; `None` for a free route, which may then set nothing about payment.
    fn charge(&self, field: &dyn Fn(&str) -> String) -> Result<Option<ChargeSpec>, RouteError> {
        let pricings = [
            ("price", self.price.is_some()),
            ("tiers", self.tiers.is_some()),
            ("price_hook", self.price_hook.is_some()),
            ("meter", self.meter.is_some()),
        ];
        if let Some((second, _)) = pricings.iter().filter(|(_, set)| *set).nth(1) {
            return Err((field(second), "give one of `price`, `tiers`, `price_hook` and `meter`".into()));
        }
        if !pricings.iter().any(|(_, set)| *set) {
            for (name, set) in [
                ("accept", self.accept.is_some()),
                ("api_keys", self.api_keys),
                ("free_calls", self.free_calls.is_some()),
            ] {
                if set {
                    return Err((field(name), "a free route (no price) takes no payment, key or free calls".into()));
                }
            }
            return Ok(None);
        }
        if self.period.is_some() && self.free_calls.is_none() && self.tiers.is_none() {
            return Err((field("period"), "counts the calls of `free_calls` or `tiers`: give one of them".into()));
        }
        if self.per.is_some() && self.price.is_none() {
            return Err((field("per"), "a per-unit route needs a `price` per unit".into()));
        }
        let price = self.price_spec(field)?;
        let free = self.free_spec(&price, field)?;
        Ok(Some(ChargeSpec { options: self.accept.clone(), price, free, api_keys: self.api_keys }))
    }

    fn price_spec(&self, field: &dyn Fn(&str) -> String) -> Result<PriceSpec, RouteError> {
        let parse = |name: &str, text: &str| Price::parse(text).map_err(|e| (field(name), e.to_string()));
        let minimum = |name: &str, price: &Price| price.check_minimum().map_err(|e| (field(name), e.to_string()));
        if let Some(tiers) = &self.tiers {
            let tiers = tiers
                .iter()
                .enumerate()
                .map(|(t, tier)| Ok((tier.calls, parse(&format!("tiers[{t}].price"), &tier.price)?)))
                .collect::<Result<_, RouteError>>()?;
            return Ok(PriceSpec::Tiered { period: self.period.unwrap_or_default(), tiers });
        }
        if let Some(meter) = &self.meter {
            return self.metered(meter, field);
        }
        if let Some(hook) = &self.price_hook {
            if hook.timeout_ms == 0 {
                return Err((field("price_hook.timeout_ms"), "must be at least 1".into()));
            }
            let fallback = match &hook.fallback_price {
                Some(text) => {
                    let price = parse("price_hook.fallback_price", text)?;
                    minimum("price_hook.fallback_price", &price)?;
                    Some(price)
                }
                None => None,
            };
            return Ok(PriceSpec::Hook {
                url: hook.url.clone(),
                timeout: Duration::from_millis(hook.timeout_ms),
                headers: hook.headers.clone(),
                fallback,
            });
        }
        let text = self.price.as_deref().expect("a priced route without tiers or a hook has a price");
        let price = parse("price", text)?;
        let Some(unit) = self.per else {
            for (name, set) in [
                ("field", self.field.is_some()),
                ("query", self.query.is_some()),
                ("min_price", self.min_price.is_some()),
                ("max_price", self.max_price.is_some()),
            ] {
                if set {
                    return Err((field(name), "only a per-unit route (`per = ...`) takes it".into()));
                }
            }
            minimum("price", &price)?;
            return Ok(PriceSpec::Flat(price));
        };
        let unit =
            UnitPricing::new(unit, self.field.as_deref(), self.query.as_deref()).map_err(|e| (field("per"), e))?;
        let min = self.min_price.as_deref().map(|text| parse("min_price", text)).transpose()?;
        let max = self.max_price.as_deref().map(|text| parse("max_price", text)).transpose()?;
        Ok(PriceSpec::PerUnit { unit, price, min, max })
    }

    /// A route priced by its response: its meter and `max_price`.
    fn metered(&self, meter: &MeterConfig, field: &dyn Fn(&str) -> String) -> Result<PriceSpec, RouteError> {
        let parse = |name: &str, text: &str| Price::parse(text).map_err(|e| (field(name), e.to_string()));
        for (name, set) in [
            ("per", self.per.is_some()),
            ("field", self.field.is_some()),
            ("query", self.query.is_some()),
            ("min_price", self.min_price.is_some()),
        ] {
            if set {
                return Err((field(name), "a route priced by its response (`meter`) does not take it".into()));
            }
        }
        if self.settle == SettleTiming::Before {
            return Err((
                field("settle"),
                "a route priced by its response settles after it: leave `settle` out".into(),
            ));
        }
        let max_text = self.max_price.as_deref().ok_or_else(|| {
            (field("max_price"), "a route priced by its response needs the most a call costs: the 402 quotes it".into())
        })?;
        let max = parse("max_price", max_text)?;
        max.check_minimum().map_err(|e| (field("max_price"), e.to_string()))?;
        let required = |name: &str, value: &Option<String>| -> Result<Price, RouteError> {
            let text = value
                .as_deref()
                .ok_or_else(|| (field(&format!("meter.{name}")), "required for this usage".to_owned()))?;
            parse(&format!("meter.{name}"), text)
        };
        let refuse = |name: &str, set: bool| -> Result<(), RouteError> {
            if set {
                return Err((field(&format!("meter.{name}")), "this usage does not take it".into()));
            }
            Ok(())
        };
        let (prices, header) = match meter.usage {
            MeterUsage::Tokens => {
                refuse("unit_price", meter.unit_price.is_some())?;
                refuse("header", meter.header.is_some())?;
                ((required("input_price", &meter.input_price)?, required("output_price", &meter.output_price)?), None)
            }
            usage => {
                refuse("input_price", meter.input_price.is_some())?;
                refuse("output_price", meter.output_price.is_some())?;
                let unit = required("unit_price", &meter.unit_price)?;
                let header = match (usage, &meter.header) {
                    (MeterUsage::Header, Some(name)) => Some(
                        http::HeaderName::from_bytes(name.as_bytes())
                            .map_err(|_| (field("meter.header"), format!("{name:?} is not a header name")))?,
                    ),
                    (MeterUsage::Header, None) => {
                        return Err((field("meter.header"), "names the response header that holds the count".into()));
                    }
                    (_, header) => {
                        refuse("header", header.is_some())?;
                        None
                    }
                };
                ((unit.clone(), unit), header)
            }
        };
        if !(1..=600).contains(&meter.voucher_wait_secs) {
            return Err((field("meter.voucher_wait_secs"), "between 1 and 600 seconds".into()));
        }
        let voucher_wait = std::time::Duration::from_secs(meter.voucher_wait_secs);
        Ok(PriceSpec::Metered { meter: MeterSpec { usage: meter.usage, header, prices, voucher_wait }, max })
    }

    fn free_spec(&self, price: &PriceSpec, field: &dyn Fn(&str) -> String) -> Result<Option<FreeSpec>, RouteError> {
        let period = self.period.unwrap_or_default();
        match (self.free_calls, self.free_per.unwrap_or_default()) {
            (None, _) if self.free_per.is_some() => {
                Err((field("free_per"), "says whom `free_calls` are for: give `free_calls`".into()))
            }
            (None, _) => Ok(None),
            (Some(0), _) => Err((field("free_calls"), "must be at least 1 (leave it out for none)".into())),
            (Some(calls), FreePer::Ip) => Ok(Some(FreeSpec::PerIp(IpQuota { calls, period }))),
            (Some(_), FreePer::Payer) if matches!(price, PriceSpec::Tiered { .. }) => Err((
                field("free_per"),
                "a tiered route gives payers free calls in its first tier (`price = \"$0\"`)".into(),
            )),
            (Some(calls), FreePer::Payer) => Ok(Some(FreeSpec::PerPayer { calls, period })),
        }
    }
}
