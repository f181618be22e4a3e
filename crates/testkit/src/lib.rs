//! Test harness shared by paygate's integration tests and benchmarks.
//!
//! It starts real software on loopback, on free ports, and stops it when dropped (anvil by PID through
//! alloy's `AnvilInstance`, Node processes through `kill_on_drop`):
//!
//! * [`Devchain`]: anvil with the project's EIP-3009 test token deployed and dev accounts 1 to 9 funded;
//! * [`Upstream`]: a small API whose answers (success, 500, down) a test can switch, counting its hits;
//! * [`node`]: the official x402 and MPP packages, driven by `tests/node/*.mjs`;
//! * [`stripe`]: localstripe; [`tip20`]: a TIP-20 look-alike token on anvil; [`lnd`]: LND's REST port, recorded;
//! * [`facilitator`]: paygate's own facilitator behind a front that fails the ways facilitators in the field do;
//! * [`payfirst`]: the pay-first dialect's documentation client (Python, web3.py);
//! * [`ShiftedClock`]: a clock a test can move forward.
//!
//! paygate itself (`ServedGateway`, `Seller`, `facilitator`) is behind the `gateway` feature and the embedded
//! devnet (`Devchain::embedded`) behind `devnet`, so that a library crate's tests compile neither unless they use
//! them.
//!
//! Everything it needs is installed by `scripts/install-test-deps`; when something is missing it panics with
//! the command that installs it, so a missing install step fails loudly instead of skipping tests.

pub mod browser;
mod chain;
#[cfg(feature = "gateway")]
pub mod facilitator;
#[cfg(feature = "gateway")]
mod gateway;
pub mod lnd;
pub mod node;
pub mod payfirst;
pub mod postgres;
pub mod process;
pub mod stripe;
pub mod tip20;
mod upstream;

use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};

pub use chain::{Devchain, MINING};
#[cfg(feature = "gateway")]
pub use gateway::{Seller, ServedGateway};
pub use upstream::{Upstream, UpstreamMode};

/// The repository root.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("workspace root exists")
}

/// Panics with the install instruction when a test dependency is missing.
pub fn missing(what: &str) -> ! {
    panic!("{what} is not installed: run `scripts/install-test-deps` (or the README's test command) first")
}

/// A clock at the system time plus an offset a test can change.
#[derive(Debug, Default)]
pub struct ShiftedClock {
    offset_secs: AtomicI64,
}

impl ShiftedClock {
    pub fn advance(&self, secs: i64) {
        self.offset_secs.fetch_add(secs, Ordering::SeqCst);
    }
}

impl paygate_core::clock::Clock for ShiftedClock {
    fn now_unix(&self) -> u64 {
        let now = paygate_core::clock::SystemClock.now_unix() as i64;
        (now + self.offset_secs.load(Ordering::SeqCst)).max(0) as u64
    }
}

/// A loopback port that refuses connections, for "the service is down" cases: port 1 is outside the kernel's
/// ephemeral range, so no server a test starts on port 0 can land on it, and no test binds it. (Servers take their
/// ports by binding port 0 themselves: a port picked here and bound later could be taken in between.)
pub const REFUSED_PORT: u16 = 1;

/// anvil dev key 0, the settler of every test config (public: never for real money).
pub const SETTLER_KEY: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";

/// The `settlement` lines of a built-in option settled by [`SETTLER_KEY`].
pub fn builtin_settlement() -> String {
    format!("settlement = \"builtin\"\nsettler_key = \"{SETTLER_KEY}\"")
}

/// Config TOML selling `POST /v1/metered/*` by x402 `upto` on the network `local` in its `USDC`: at most one cent
/// a call, settled for the tokens the answer reports ($0.000001 an input token, $0.000002 an output token), paid to
/// `pay_to`, settled as the `settlement` lines say (`settler_key = ...` or `facilitator_url = ...`).
pub fn metered_upto_toml(pay_to: alloy::primitives::Address, settlement: &str) -> String {
    format!(
        "[[accept]]\nname = \"upto\"\nrail = \"upto\"\nnetwork = \"local\"\nasset = \"USDC\"\npay_to = \"{pay_to}\"\n\
         {settlement}\n\n[[routes]]\nmethod = \"POST\"\npath = \"/v1/metered/*\"\nmax_price = \"$0.01\"\n\
         accept = [\"upto\"]\n\n[routes.meter]\nusage = \"tokens\"\ninput_price = \"$0.000001\"\n\
         output_price = \"$0.000002\"\n"
    )
}

/// Config TOML for the test token: `[networks.local]` (chain `chain_id` at `rpc_url`, plus `network_extra`
/// lines) with its `USDC`, and one `[[accept]]` option `usdc-local` paying `pay_to`, settled as the
/// `settlement` lines say.
pub fn local_usdc_toml(
    chain_id: u64,
    rpc_url: &str,
    network_extra: &str,
    pay_to: alloy::primitives::Address,
    settlement: &str,
) -> String {
    usdc_toml("local", chain_id, &format!("rpc_url = \"{rpc_url}\"\n{network_extra}"), pay_to, settlement)
}

/// [`local_usdc_toml`] for a network named `network` (with `network_extra` lines, its `rpc_url` among them when
/// it has one), whose option is `usdc-<network>`.
pub fn usdc_toml(
    network: &str,
    chain_id: u64,
    network_extra: &str,
    pay_to: alloy::primitives::Address,
    settlement: &str,
) -> String {
    format!(
        r#"
[networks.{network}]
chain_id = {chain_id}
{network_extra}

[networks.{network}.assets.USDC]
address = "{token}"
decimals = 6
eip712_name = "USD Coin"
eip712_version = "2"

[[accept]]
name = "usdc-{network}"
network = "{network}"
asset = "USDC"
pay_to = "{pay_to}"
{settlement}
"#,
        token = paygate_chain::devtoken::test_usdc_address(),
    )
}
