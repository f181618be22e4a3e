//! The config tests: defaults, errors naming file and field, environment references and overrides, masked secrets.

use super::*;

const MINIMAL: &str = r#"
    [upstream]
    url = "http://127.0.0.1:9000"
"#;

#[test]
fn the_store_table_loads_without_the_rest_of_the_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    let text = "[store]\nurl = \"sqlite://${PAYGATE_TEST_UNSET_DB:-ledger.db}\"\n\n[[accept]]\nrail = \"stripe\"\n\
                [accept.stripe]\nsecret_key = \"${PAYGATE_TEST_UNSET_STRIPE_KEY}\"\n";
    std::fs::write(&path, text).unwrap();
    let err = Config::load(&path).unwrap_err();
    assert_eq!(err.field, "accept[0].stripe.secret_key", "the whole config needs the key");
    let store = StoreConfig::load(&path).expect("the store alone does not");
    assert_eq!(store.url, format!("sqlite://{}", dir.path().join("ledger.db").display()));
    std::fs::write(&path, "[store]\nurl = \"${PAYGATE_TEST_UNSET_DB}\"\n").unwrap();
    assert_eq!(StoreConfig::load(&path).unwrap_err().field, "store.url");
}

#[test]
fn environment_variables_named_after_a_field_override_the_file() {
    let text = "[server]\nlisten = \"127.0.0.1:8402\"\nsecret = \"12345678901234567890123456789012345\"\n\n\
                [upstream]\nurl = \"http://127.0.0.1:9000\"\n";
    let vars = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    };
    let overrides = vars(&[
        ("PAYGATE_SERVER_LISTEN", "0.0.0.0:9402"),
        // A string in the file stays a string, even made of digits.
        ("PAYGATE_SERVER_SECRET", "98765432109876543210987654321098765"),
        ("PAYGATE_SERVER_CHALLENGE_TTL_SECS", "60"),
        ("PAYGATE_SERVER_CORS_ORIGINS", r#"["https://app.example"]"#),
        ("PAYGATE_STORE_URL", "postgres://paygate@db/paygate"),
        ("PAYGATE_NETWORKS_BASE_SEPOLIA_RPC_URL", "https://sepolia.example"),
        ("PAYGATE_RECONCILER_INTERVAL_SECS", "5"),
        ("PAYGATE_ADMIN_LISTEN", "127.0.0.1:9403"),
        ("PAYGATE_ADMIN_TOKEN", "a-token-from-the-environment"),
        // Not config fields: left alone.
        ("PAYGATE_LOG", "debug"),
        ("PAYGATE_WALLET_KEY", "0x01"),
    ]);
    let config = Config::parse_with(text, "t.toml", &|_| None, &overrides).unwrap();
    assert_eq!(config.server.listen, "0.0.0.0:9402");
    assert_eq!(config.server.secret.as_ref().map(Secret::expose), Some("98765432109876543210987654321098765"));
    assert_eq!(config.server.challenge_ttl_secs, 60);
    assert_eq!(config.server.cors_origins, ["https://app.example"]);
    assert_eq!(config.store.url, "postgres://paygate@db/paygate");
    assert_eq!(config.networks["base-sepolia"].rpc_url.as_deref(), Some("https://sepolia.example"));
    assert_eq!(config.reconciler.interval_secs, 5);
    assert_eq!(config.admin.listen.as_deref(), Some("127.0.0.1:9403"));
    assert_eq!(config.admin.checked_token("t.toml").unwrap(), Some("a-token-from-the-environment"));

    let err = Config::parse_with(text, "t.toml", &|_| None, &vars(&[("PAYGATE_SERVER_LISTN", "x")])).unwrap_err();
    assert!(err.to_string().contains("listn"), "{err}");
    let err =
        Config::parse_with(text, "t.toml", &|_| None, &vars(&[("PAYGATE_NETWORKS_MARS_RPC_URL", "x")])).unwrap_err();
    assert!(err.to_string().contains("PAYGATE_NETWORKS_MARS_RPC_URL"), "{err}");
}

#[test]
fn a_printed_config_masks_its_secrets() {
    let text = "[server]\nsecret = \"a-secret-of-at-least-thirty-two-bytes!!\"\n[upstream]\nurl = \"http://x\"\n";
    let printed = toml::to_string(&Config::parse(text, "t.toml").unwrap()).unwrap();
    assert!(printed.contains("secret = \"<secret>\""), "{printed}");
    assert!(!printed.contains("thirty-two"), "{printed}");
    // The devnet option a config without options gets, its settler key masked too.
    assert!(printed.contains("settler_key = \"<secret>\""), "{printed}");
}

#[test]
fn minimal_config_has_defaults() {
    let c = Config::parse(MINIMAL, "x.toml").unwrap();
    assert_eq!(c.server.listen, "127.0.0.1:8402");
    assert_eq!(c.server.challenge_ttl_secs, 30);
    assert_eq!(c.server.unknown_routes, UnknownRoutes::Reject);
    assert_eq!(c.store.url, "sqlite://paygate.db");
}

#[test]
fn errors_name_file_and_field() {
    let text = format!("{MINIMAL}\n[[routes]]\npath = \"/a\"\nprice = 3\n");
    let e = Config::parse(&text, "gw.toml").unwrap_err();
    assert_eq!(e.file, "gw.toml");
    assert_eq!(e.field, "routes[0].price");
    assert!(e.message.contains("string"), "{e}");
    let e = Config::parse("[server]\nlisten = \"x\"\n", "gw.toml").unwrap_err();
    assert!(e.message.contains("upstream"), "{e}");
    let e = Config::parse(&format!("{MINIMAL}\n[server]\nlisten = \"x\"\nbogus = 1\n"), "gw.toml").unwrap_err();
    assert_eq!(e.field, "server.bogus");
    assert!(e.message.contains("bogus"), "{e}");
    let e = Config::parse("[upstream\n", "gw.toml").unwrap_err();
    assert_eq!(e.field, "line 1");
}

#[test]
fn environment_references_expand_and_secrets_do_not_print() {
    let env = |name: &str| (name == "PAYGATE_TEST_SECRET_X").then(|| "s3cr3t-value".to_owned());
    let text = format!(
        "{MINIMAL}\n[server]\nsecret = \"${{PAYGATE_TEST_SECRET_X}}\"\nrealm = \"${{PAYGATE_TEST_UNSET_Y:-api.example}}\"\n"
    );
    let c = Config::parse_with_env(&text, "x.toml", &env).unwrap();
    assert_eq!(c.server.secret.as_ref().unwrap().expose(), "s3cr3t-value");
    assert_eq!(c.server.realm.as_deref(), Some("api.example"));
    assert!(!format!("{c:?}").contains("s3cr3t"));
    let e = Config::parse_with_env(
        &format!("{MINIMAL}\n[server]\nsecret = \"${{PAYGATE_TEST_UNSET_Z}}\"\n"),
        "x.toml",
        &env,
    )
    .unwrap_err();
    assert_eq!(e.field, "server.secret");
    assert!(e.message.contains("PAYGATE_TEST_UNSET_Z"));
}

#[test]
fn a_route_priced_by_its_response_names_what_is_wrong() {
    let route = |lines: &str| format!("{MINIMAL}\n[[routes]]\nmethod = \"POST\"\npath = \"/v1/chat\"\n{lines}\n");
    let field = |lines: &str| Config::parse(&route(lines), "gw.toml").unwrap_err().field;
    let tokens = "[routes.meter]\nusage = \"tokens\"\ninput_price = \"$0.000001\"\noutput_price = \"$0.000002\"\n";
    assert!(Config::parse(&route(&format!("max_price = \"$0.01\"\n{tokens}")), "gw.toml").is_ok());
    assert_eq!(field(tokens), "routes[0].max_price", "the 402 quotes a maximum");
    assert_eq!(field(&format!("price = \"$0.01\"\nmax_price = \"$0.01\"\n{tokens}")), "routes[0].meter");
    assert_eq!(field(&format!("max_price = \"$0.01\"\nsettle = \"before\"\n{tokens}")), "routes[0].settle");
    let no_output = "max_price = \"$0.01\"\n[routes.meter]\nusage = \"tokens\"\ninput_price = \"$0.000001\"\n";
    assert_eq!(field(no_output), "routes[0].meter.output_price");
    let no_header = "max_price = \"$0.01\"\n[routes.meter]\nusage = \"header\"\nunit_price = \"$0.0001\"\n";
    assert_eq!(field(no_header), "routes[0].meter.header");
    let stray =
        "max_price = \"$0.01\"\n[routes.meter]\nusage = \"bytes\"\nunit_price = \"$0.0001\"\ninput_price = \"$1\"\n";
    assert_eq!(field(stray), "routes[0].meter.input_price");
    let unknown = "max_price = \"$0.01\"\n[routes.meter]\nusage = \"words\"\nunit_price = \"$0.0001\"\n";
    assert_eq!(field(unknown), "routes[0].meter.usage");
    let no_wait = format!("max_price = \"$0.01\"\n{tokens}voucher_wait_secs = 0\n");
    assert_eq!(field(&no_wait), "routes[0].meter.voucher_wait_secs", "a stream must wait for a voucher");
}

#[test]
fn a_route_that_describes_itself_wrongly_is_named() {
    let route = |lines: &str| {
        format!("{MINIMAL}\n[[routes]]\nmethod = \"POST\"\npath = \"/v1/x\"\nprice = \"$0.01\"\n{lines}\n")
    };
    let field = |lines: &str| Config::parse(&route(lines), "gw.toml").unwrap_err().field;
    assert!(Config::parse(&route("[routes.discovery]\nbody_type = \"text\"\ninput = \"hi\""), "gw.toml").is_ok());
    assert_eq!(field("[routes.discovery]\nbody_type = \"xml\""), "routes[0].discovery.body_type");
    assert_eq!(field("[routes.discovery]\ninput_schema = \"string\""), "routes[0].discovery.input_schema");
    assert_eq!(field("[routes.discovery]\nexample = 1"), "routes[0].discovery.example", "an unknown key");
}

#[test]
fn a_tool_route_that_cannot_price_its_tool_is_named() {
    let route = |lines: &str| format!("{MINIMAL}\n[[routes]]\npath = \"/mcp\"\n{lines}\n");
    let field = |lines: &str| Config::parse(&route(lines), "gw.toml").unwrap_err().field;
    assert!(Config::parse(&route("tool = \"forecast\"\nprice = \"$0.01\""), "gw.toml").is_ok());
    assert!(Config::parse(&route("tool = \"forecast\"\nmethod = \"POST\"\nprice = \"$0.01\""), "gw.toml").is_ok());
    assert_eq!(field("tool = \"forecast\""), "routes[0].tool", "a tool route prices its tool");
    assert_eq!(field("tool = \"two words\"\nprice = \"$0.01\""), "routes[0].tool");
    assert_eq!(field("tool = \"forecast\"\nmethod = \"GET\"\nprice = \"$0.01\""), "routes[0].method");
    let meter = "tool = \"t\"\nmax_price = \"$0.01\"\n[routes.meter]\nusage = \"bytes\"\nunit_price = \"$0.0001\"";
    assert_eq!(field(meter), "routes[0].meter");
    let wildcard = format!("{MINIMAL}\n[[routes]]\npath = \"/mcp/*\"\ntool = \"t\"\nprice = \"$0.01\"\n");
    assert_eq!(Config::parse(&wildcard, "gw.toml").unwrap_err().field, "routes[0].path");
}
