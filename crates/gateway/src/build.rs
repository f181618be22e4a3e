//! Turns a checked [`Config`] into a running [`Gateway`]: opens the store, builds one payment method per accepted
//! option through its rail (`paygate_methods::registry`), and prices every route's rule in the options it takes.
//! Every error names the config field at fault.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use paygate_chain::Chain;
use paygate_core::binding::ChallengeSecret;
use paygate_core::clock::{Clock, SystemClock};
use paygate_core::error::Causes;
use paygate_core::money::{AtomicAmount, Price};
use paygate_methods::rail::{BuiltOption, RailContext};
use paygate_store::Store;

use crate::config::{Config, ConfigError, FreeSpec, PriceSpec, RouteSpec};
use crate::engine::{FreeCalls, Gateway, Pricing, Route, RoutePricing, Settings};
use crate::meter::Meter;
use crate::offers::RouteOffer;
use crate::price_hook::PriceHook;
use crate::pricing::Bounds;
use crate::usage::PayerTiers;

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
    let secret = challenge_secret(config, &err)?;
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
        paygate_store::open(&config.store.url).await.map_err(|e| err("store.url".into(), Causes(&e).to_string()))?;

    let mut ctx = RailContext {
        networks: &config.networks,
        challenge_ttl_secs: config.server.challenge_ttl_secs,
        clock: options.clock.clone(),
        chains: options.chains.clone(),
        senders: HashMap::new(),
        // The channel rails write through a book that remembers what they last wrote: a call's reservation and
        // charge are then one compare-and-swap each (`paygate_core::channel_cache`).
        channels: Some(Arc::new(paygate_core::channel_cache::CachedBook::new(store.clone()))),
    };
    let mut built_options: Vec<BuiltOption> = Vec::new();
    for (i, accept) in config.accept.iter().enumerate() {
        let entry = format!("accept[{i}]");
        let option =
            accept.settings.build(&accept.common, &mut ctx).await.map_err(|e| err(e.path(&entry), e.message))?;
        let name = &option.method.option().name;
        if built_options.iter().any(|o| o.method.option().name == *name) {
            return Err(err(format!("{entry}.name"), format!("{name:?} is used by two options")));
        }
        built_options.push(option);
    }

    let mut routes = Vec::with_capacity(config.route_specs.len());
    for (i, spec) in config.route_specs.iter().enumerate() {
        let field = |name: &str| format!("routes[{i}].{name}");
        let builder = RouteBuilder { spec, options: &built_options, config, clock: &options.clock, field: &field };
        routes.push(builder.build().map_err(|(f, m)| err(f, m))?);
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

fn challenge_secret(
    config: &Config,
    err: &dyn Fn(String, String) -> ConfigError,
) -> Result<ChallengeSecret, ConfigError> {
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
    Ok(secret)
}

/// A route error: the field and what is wrong.
type FieldError = (String, String);

/// Builds one route from its spec: its pricing rule priced in the options it takes.
struct RouteBuilder<'a> {
    spec: &'a RouteSpec,
    options: &'a [BuiltOption],
    config: &'a Config,
    clock: &'a Arc<dyn Clock>,
    field: &'a dyn Fn(&str) -> String,
}

impl RouteBuilder<'_> {
    fn build(&self) -> Result<Route, FieldError> {
        let spec = self.spec;
        let pricing = match &spec.charge {
            None => None,
            Some(charge) => {
                let chosen = self.chosen(charge.options.as_deref())?;
                let named = charge.options.is_some();
                let price = self.pricing(&charge.price, &chosen, named)?;
                let free = charge.free.as_ref().map(|free| match free {
                    FreeSpec::PerIp(quota) => FreeCalls::PerIp(quota.clone()),
                    FreeSpec::PerPayer { calls, period } => {
                        FreeCalls::PerPayer(PayerTiers::free_calls(*calls, *period))
                    }
                });
                Some(RoutePricing { price, free, api_keys: charge.api_keys })
            }
        };
        Ok(Route {
            name: spec.name.clone(),
            matcher: spec.matcher.clone(),
            pricing,
            settle: spec.settle,
            resource: spec.resource.clone(),
        })
    }

    /// The options the route takes: those it names, or all.
    fn chosen(&self, names: Option<&[String]>) -> Result<Vec<&BuiltOption>, FieldError> {
        let Some(names) = names else { return Ok(self.options.iter().collect()) };
        names
            .iter()
            .map(|name| {
                self.options
                    .iter()
                    .find(|o| o.method.option().name == *name)
                    .ok_or_else(|| ((self.field)("accept"), format!("no payment option is named {name:?}")))
            })
            .collect()
    }

    fn pricing(&self, price: &PriceSpec, chosen: &[&BuiltOption], named: bool) -> Result<Pricing, FieldError> {
        Ok(match price {
            PriceSpec::Flat(price) => Pricing::Flat(self.offers("price", price, chosen, named, false)?),
            PriceSpec::PerUnit { unit, price, min, max } => {
                let offers = self.offers("price", price, chosen, named, true)?;
                let bounds = self.bounds(&offers, min.as_ref(), max.as_ref())?;
                Pricing::PerUnit { unit: unit.clone().with_bounds(bounds), offers }
            }
            PriceSpec::Tiered { period, tiers } => {
                let mut steps = Vec::with_capacity(tiers.len());
                for (t, (calls, price)) in tiers.iter().enumerate() {
                    let name = format!("tiers[{t}].price");
                    let offers =
                        if price.is_zero() { Vec::new() } else { self.offers(&name, price, chosen, named, false)? };
                    steps.push((*calls, offers));
                }
                Pricing::Tiered(PayerTiers::new(*period, steps).map_err(|e| ((self.field)("tiers"), e))?)
            }
            PriceSpec::Metered { meter, max } => {
                let offers = self.offers("max_price", max, chosen, named, false)?;
                let prices = offers
                    .iter()
                    .map(|offer| {
                        let option = self.built_option(offer);
                        let price = |name: &str, price| option.price(price).map_err(|e| ((self.field)(name), e));
                        Ok((
                            price("meter.input_price", &meter.prices.0)?,
                            price("meter.output_price", &meter.prices.1)?,
                        ))
                    })
                    .collect::<Result<_, FieldError>>()?;
                let meter = Meter::new(meter.usage, meter.header.clone(), prices).waiting(meter.voucher_wait);
                let streamed = meter.streamed_offers(&offers);
                Pricing::Metered { meter, offers, streamed }
            }
            PriceSpec::Hook { url, timeout, headers, fallback } => {
                let fallback = match fallback {
                    Some(price) => Some(self.offers("price_hook.fallback_price", price, chosen, named, false)?),
                    None => None,
                };
                let hook_options = chosen.iter().map(|&o| o.clone()).collect();
                let keep = (self.config.server.challenge_ttl_secs, self.clock.clone());
                let hook = PriceHook::new(url, *timeout, keep, headers, hook_options, fallback)
                    .map_err(|e| ((self.field)("price_hook"), e))?;
                Pricing::Hook(hook)
            }
        })
    }

    /// The offers of `price` (the field `name`) in the chosen options: those that can charge it, or all of them
    /// when the route names them. A unit price may be below what one payment can be; the request's total is
    /// checked instead.
    fn offers(
        &self,
        name: &str,
        price: &Price,
        chosen: &[&BuiltOption],
        named: bool,
        unit_price: bool,
    ) -> Result<Vec<RouteOffer>, FieldError> {
        let mut offers = Vec::new();
        for option in chosen {
            let option_name = &option.method.option().name;
            let path = &self.spec.name;
            match option.price(price).map(|amount| RouteOffer::new(option.method.clone(), amount)) {
                Ok(offer) if offer.can_be_paid() || unit_price => offers.push(offer),
                Ok(_) if named => {
                    let message = format!("option {option_name:?} cannot charge {price} (under its minimum)");
                    return Err(((self.field)(name), message));
                }
                Ok(_) => {
                    tracing::warn!(route = %path, option = %option_name, "option cannot charge this price; not offered")
                }
                // A route that names the option must be payable through it; one that takes every option takes
                // those that can charge its price.
                Err(problem) if named => {
                    return Err(((self.field)(name), format!("{problem} (option {option_name:?})")));
                }
                Err(problem) => {
                    tracing::warn!(route = %path, option = %option_name, %problem, "option not offered on this route")
                }
            }
        }
        if offers.is_empty() {
            return Err(((self.field)(name), format!("no [[accept]] option can charge {price}")));
        }
        Ok(offers)
    }

    /// The built option an offer of this route is made in.
    fn built_option(&self, offer: &RouteOffer) -> &BuiltOption {
        self.options
            .iter()
            .find(|o| Arc::ptr_eq(&o.method, &offer.method))
            .expect("every offer is one of the built options")
    }

    /// A per-unit route's minimum and maximum amount in each of its offers' options.
    fn bounds(
        &self,
        offers: &[RouteOffer],
        min: Option<&Price>,
        max: Option<&Price>,
    ) -> Result<Vec<Bounds>, FieldError> {
        let bound = |name: &str, price: Option<&Price>| -> Result<Vec<Option<AtomicAmount>>, FieldError> {
            let Some(price) = price else { return Ok(vec![None; offers.len()]) };
            offers
                .iter()
                .map(|offer| self.built_option(offer).price(price).map(Some).map_err(|e| ((self.field)(name), e)))
                .collect()
        };
        let (min, max) = (bound("min_price", min)?, bound("max_price", max)?);
        if min.iter().zip(&max).any(|(min, max)| matches!((min, max), (Some(a), Some(b)) if a > b)) {
            return Err(((self.field)("min_price"), "is above max_price".into()));
        }
        Ok(min.into_iter().zip(max).collect())
    }
}
