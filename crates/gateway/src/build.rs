//! Turns a [`Config`] into a running [`Gateway`]: opens the store, connects chains, builds one payment method
//! per accepted option and the offers of every route. Every error names the config field at fault.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use http::Method;

use paygate_chain::Chain;
use paygate_core::binding::ChallengeSecret;
use paygate_core::clock::{Clock, SystemClock};
use paygate_core::money::{AtomicAmount, Price};
use paygate_store::Store;

use crate::config::{Config, ConfigError, FreePer};
use crate::engine::{FreeCalls, Gateway, Pricing, Route, RoutePricing, Settings};
use crate::offers::{ResourceText, RouteOffer};
use crate::price_hook::PriceHook;
use crate::pricing::UnitPricing;
use crate::rails::{BuiltOption, RailContext, build_option};
use crate::routes::{PathPattern, RouteMatcher};
use crate::usage::{IpQuota, PayerTiers};

/// Everything `build` makes.
#[derive(Debug)]
pub struct Built {
    pub gateway: Arc<Gateway>,
    /// Chains by network name, for health checks and tools.
    pub chains: BTreeMap<String, Arc<dyn Chain>>,
}

/// Options that change how a config is built, for tests and the devnet.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub clock: Arc<dyn Clock>,
    /// Chains supplied by the caller (the embedded devnet) by network name; used instead of `rpc_url`.
    pub chains: BTreeMap<String, Arc<dyn Chain>>,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions { clock: Arc::new(SystemClock), chains: BTreeMap::new() }
    }
}

/// Builds the gateway a config describes. `file` names the config in errors.
pub async fn build(config: &Config, file: &str, options: BuildOptions) -> Result<Built, ConfigError> {
    let err = |field: String, message: String| ConfigError { file: file.to_owned(), field, message };

    let secret = match &config.server.secret {
        Some(secret) => ChallengeSecret::new(secret.expose().as_bytes().to_vec())
            .map_err(|e| err("server.secret".into(), e.to_string()))?,
        None => {
            tracing::warn!("server.secret is not set: using a random one; challenges will not survive a restart");
            ChallengeSecret::new(alloy::primitives::B256::random().to_vec()).expect("32 random bytes")
        }
    };
    if config.server.challenge_ttl_secs == 0 {
        return Err(err("server.challenge_ttl_secs".into(), "must be at least 1".into()));
    }

    let reconciler = &config.reconciler;
    if reconciler.interval_secs > 0 && reconciler.stale_after_secs <= config.upstream.timeout_secs {
        return Err(err(
            "reconciler.stale_after_secs".into(),
            format!(
                "must be above upstream.timeout_secs ({}): a request still waiting for your API would be voided",
                config.upstream.timeout_secs
            ),
        ));
    }

    let store: Arc<dyn Store> =
        paygate_store::open(&config.store.url).await.map_err(|e| err("store.url".into(), e.to_string()))?;

    let mut ctx =
        RailContext { config, clock: options.clock.clone(), chains: options.chains.clone(), senders: HashMap::new() };
    let mut built_options: Vec<BuiltOption> = Vec::new();
    for (i, accept) in config.accept.iter().enumerate() {
        let field = |name: &str| format!("accept[{i}].{name}");
        let option = build_option(&mut ctx, accept, &field).await.map_err(|(f, m)| err(f, m))?;
        if built_options.iter().any(|o| o.method.option().name == option.method.option().name) {
            return Err(err(field("name"), format!("{:?} is used by two options", option.method.option().name)));
        }
        built_options.push(option);
    }

    let mut routes = Vec::new();
    for (i, route) in config.routes.iter().enumerate() {
        let field = |name: &str| format!("routes[{i}].{name}");
        let method = match route.method.as_deref() {
            None | Some("*") => None,
            Some(m) => Some(
                Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                    .map_err(|_| err(field("method"), format!("{m:?} is not an HTTP method")))?,
            ),
        };
        let pattern = PathPattern::parse(&route.path).map_err(|e| err(field("path"), e.0))?;
        let pricings = [
            ("price", route.price.is_some()),
            ("tiers", route.tiers.is_some()),
            ("price_hook", route.price_hook.is_some()),
        ];
        if let Some((second, _)) = pricings.iter().filter(|(_, set)| *set).nth(1) {
            return Err(err(field(second), "give one of `price`, `tiers` and `price_hook`".into()));
        }
        let priced = pricings.iter().any(|(_, set)| *set);
        if !priced {
            for (name, set) in [
                ("accept", route.accept.is_some()),
                ("api_keys", route.api_keys),
                ("free_calls", route.free_calls.is_some()),
            ] {
                if set {
                    return Err(err(field(name), "a free route (no price) takes no payment, key or free calls".into()));
                }
            }
        }
        let named = route.accept.is_some();
        let chosen: Vec<&BuiltOption> = match &route.accept {
            None => built_options.iter().collect(),
            Some(names) => names
                .iter()
                .map(|name| {
                    built_options
                        .iter()
                        .find(|o| o.method.option().name == *name)
                        .ok_or_else(|| err(field("accept"), format!("no payment option is named {name:?}")))
                })
                .collect::<Result<_, _>>()?,
        };
        // The offers of `price` (the field `name`) in the chosen options: those that can charge it, or all of
        // them when the route names them. A unit price may be below what one payment can be; the request's total
        // is checked instead.
        let offers_of = |name: &str, price: &Price, unit_price: bool| -> Result<Vec<RouteOffer>, ConfigError> {
            let mut offers = Vec::new();
            for option in &chosen {
                let option_name = &option.method.option().name;
                match option.price(price).map(|amount| RouteOffer::new(option.method.clone(), amount)) {
                    Ok(offer) if offer.can_be_paid() || unit_price => offers.push(offer),
                    Ok(_) if named => {
                        return Err(err(
                            field(name),
                            format!("option {option_name:?} cannot charge {price} (under its minimum)"),
                        ));
                    }
                    Ok(_) => {
                        tracing::warn!(route = %route.path, option = %option_name, "option cannot charge this price; not offered")
                    }
                    // A route that names the option must be payable through it; one that takes every option
                    // takes those that can charge its price.
                    Err(problem) if named => {
                        return Err(err(field(name), format!("{problem} (option {option_name:?})")));
                    }
                    Err(problem) => {
                        tracing::warn!(route = %route.path, option = %option_name, %problem, "option not offered on this route")
                    }
                }
            }
            if offers.is_empty() {
                return Err(err(field(name), format!("no [[accept]] option can charge {price}")));
            }
            Ok(offers)
        };
        let parse_price = |name: &str, text: &str| Price::parse(text).map_err(|e| err(field(name), e.to_string()));
        let period = route.period.unwrap_or_default();
        if route.period.is_some() && route.free_calls.is_none() && route.tiers.is_none() {
            return Err(err(field("period"), "counts the calls of `free_calls` or `tiers`: give one of them".into()));
        }
        if route.per.is_some() && route.price.is_none() {
            return Err(err(field("per"), "a per-unit route needs a `price` per unit".into()));
        }

        let mut offers = Vec::new();
        let mut tiered = None;
        let mut payer_free = None;
        let mut price_hook = None;
        if let Some(text) = &route.price {
            let price = parse_price("price", text)?;
            if route.per.is_none() {
                price.check_minimum().map_err(|e| err(field("price"), e.to_string()))?;
            }
            offers = offers_of("price", &price, route.per.is_some())?;
        }
        if let Some(tiers) = &route.tiers {
            let mut steps = Vec::with_capacity(tiers.len());
            for (t, tier) in tiers.iter().enumerate() {
                let name = format!("tiers[{t}].price");
                let price = parse_price(&name, &tier.price)?;
                steps.push((tier.calls, if price.is_zero() { Vec::new() } else { offers_of(&name, &price, false)? }));
            }
            tiered = Some(PayerTiers::new(period, steps).map_err(|e| err(field("tiers"), e))?);
        }
        if let Some(hook) = &route.price_hook {
            if hook.timeout_ms == 0 {
                return Err(err(field("price_hook.timeout_ms"), "must be at least 1".into()));
            }
            let fallback = match &hook.fallback_price {
                Some(text) => {
                    let price = parse_price("price_hook.fallback_price", text)?;
                    price.check_minimum().map_err(|e| err(field("price_hook.fallback_price"), e.to_string()))?;
                    Some(offers_of("price_hook.fallback_price", &price, false)?)
                }
                None => None,
            };
            let hook_options = chosen.iter().map(|&o| o.clone()).collect();
            let timeout = std::time::Duration::from_millis(hook.timeout_ms);
            let keep = (config.server.challenge_ttl_secs, options.clock.clone());
            price_hook = Some(
                PriceHook::new(&hook.url, timeout, keep, &hook.headers, hook_options, fallback)
                    .map_err(|e| err(field("price_hook"), e))?,
            );
        }
        let mut ip_quota = None;
        match (route.free_calls, route.free_per.unwrap_or_default()) {
            (None, _) if route.free_per.is_some() => {
                return Err(err(field("free_per"), "says whom `free_calls` are for: give `free_calls`".into()));
            }
            (None, _) => {}
            (Some(0), _) => return Err(err(field("free_calls"), "must be at least 1 (leave it out for none)".into())),
            (Some(calls), FreePer::Ip) => ip_quota = Some(IpQuota { calls, period }),
            (Some(_), FreePer::Payer) if tiered.is_some() => {
                return Err(err(
                    field("free_per"),
                    "a tiered route gives payers free calls in its first tier (`price = \"$0\"`)".into(),
                ));
            }
            (Some(calls), FreePer::Payer) => payer_free = Some(PayerTiers::free_calls(calls, period)),
        }
        let per_unit = match route.per {
            None => {
                for (name, set) in [
                    ("field", route.field.is_some()),
                    ("query", route.query.is_some()),
                    ("min_price", route.min_price.is_some()),
                    ("max_price", route.max_price.is_some()),
                ] {
                    if set {
                        return Err(err(field(name), "only a per-unit route (`per = ...`) takes it".into()));
                    }
                }
                None
            }
            Some(unit) => {
                let pricing = UnitPricing::new(unit, route.field.as_deref(), route.query.as_deref())
                    .map_err(|e| err(field("per"), e))?;
                let bound = |name: &str, text: &Option<String>| -> Result<Vec<Option<AtomicAmount>>, ConfigError> {
                    let Some(text) = text else { return Ok(vec![None; offers.len()]) };
                    let price = parse_price(name, text)?;
                    offers
                        .iter()
                        .map(|offer| {
                            let option = built_options
                                .iter()
                                .find(|o| Arc::ptr_eq(&o.method, &offer.method))
                                .expect("every offer is one of the built options");
                            option.price(&price).map(Some).map_err(|e| err(field(name), e))
                        })
                        .collect()
                };
                let (min, max) = (bound("min_price", &route.min_price)?, bound("max_price", &route.max_price)?);
                if min.iter().zip(&max).any(|(min, max)| matches!((min, max), (Some(a), Some(b)) if a > b)) {
                    return Err(err(field("min_price"), "is above max_price".into()));
                }
                Some(pricing.with_bounds(min.into_iter().zip(max).collect()))
            }
        };
        let name = format!("{} {}", method.as_ref().map_or("*", |m| m.as_str()), route.path);
        let price = match (tiered, price_hook, per_unit) {
            (Some(tiers), _, _) => Some(Pricing::Tiered(tiers)),
            (None, Some(hook), _) => Some(Pricing::Hook(hook)),
            (None, None, Some(unit)) => Some(Pricing::PerUnit { unit, offers }),
            (None, None, None) if priced => Some(Pricing::Flat(offers)),
            (None, None, None) => None,
        };
        let free = ip_quota.map(FreeCalls::PerIp).or(payer_free.map(FreeCalls::PerPayer));
        routes.push(Route {
            name,
            matcher: RouteMatcher { method, pattern },
            pricing: price.map(|price| RoutePricing { price, free, api_keys: route.api_keys }),
            settle: route.settle,
            resource: ResourceText { description: route.description.clone(), mime_type: route.mime_type.clone() },
        });
    }

    let settings = Settings {
        realm: config.server.realm.clone(),
        public_url: config.server.public_url.clone(),
        challenge_ttl_secs: config.server.challenge_ttl_secs,
        max_body_bytes: config.server.max_body_bytes,
        unknown_routes: config.server.unknown_routes,
        per_ip_per_minute: config.limits.per_ip_per_minute,
        per_payer_per_minute: config.limits.per_payer_per_minute,
    };
    let methods = built_options.iter().map(|o| o.method.clone()).collect();
    let gateway = Gateway::new(routes, methods, secret, store, options.clock, settings);
    Ok(Built { gateway: Arc::new(gateway), chains: ctx.chains })
}
