//! The docs cannot rot: every shell command in `README.md` and `docs/*.md` runs here, in order, with the real
//! `paygate` binary on `PATH`, in a fresh directory and `HOME` per document, and must succeed.
//!
//! How a document runs:
//! - each ```` ```sh ```` block is one `bash -euo pipefail` script; its exports carry on to the next block;
//! - a command that runs until Ctrl-C (`paygate serve` without `--check-config`, `paygate demo` without
//!   `--exit`, `paygate dev upstream`) starts in the background, is waited for on its port (8402 for the
//!   gateway, 9000 for the sample API, as the docs use), and is stopped when the document ends;
//! - a ```` ```toml ```` block right after `<!-- file: NAME -->` is written to `NAME` when reached;
//! - `<!-- test: faucet -->` stands in for a testnet faucet: it gives 10 USDC to the last address the previous
//!   block printed.
//!
//! What cannot run here is replaced, and only that: `cargo run --locked -p paygate --` by the built binary and
//! `cargo run` of the client's example by the example `cargo test --workspace` built (cargo is busy running us);
//! Base Sepolia (`https://sepolia.base.org`) by anvil as chain 84532 with the test token's code, renamed to
//! Base Sepolia USDC's EIP-712 name `USDC`, at that USDC's address; the x402.org facilitator by the official
//! `@x402` facilitator on that anvil. `scripts/test` is not run here: it is what runs this test (CI runs it
//! through `.ci/run`, which the last test below checks).
//!
//! The documents share the docs' fixed ports, so one test runs them all, one after the other.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use alloy::primitives::{Address, Bytes, U256, keccak256};
use alloy::sol_types::SolCall;
use paygate_chain::abi::Eip3009Token;
use paygate_chain::devtoken::{balance_of, dev_account};
use paygate_chain::{Chain, TxSender, wait_for_receipt};
use paygate_testkit::{Devchain, SETTLER_KEY, node, workspace_root};

const BIN: &str = env!("CARGO_BIN_EXE_paygate");

/// Base Sepolia's USDC, whose EIP-712 name is `USDC` (Base mainnet's is `USD Coin`).
const BASE_SEPOLIA_USDC: &str = "0x036CbD53842c5426634e7929541eC2318f3dCF7e";

/// One step of a document.
#[derive(Debug)]
enum Step {
    /// A ```` ```sh ```` block: its lines, with `\` continuations joined, comments and blank lines kept out.
    Shell(Vec<String>),
    /// A ```` ```toml ```` (or other) block marked `<!-- file: NAME -->`.
    File { name: String, text: String },
    /// `<!-- test: faucet -->`.
    Faucet,
}

/// The steps of a Markdown document, in order.
fn steps(markdown: &str) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut lines = markdown.lines();
    let mut file: Option<String> = None;
    while let Some(line) = lines.next() {
        let trimmed = line.trim();
        if let Some(name) = trimmed.strip_prefix("<!-- file: ").and_then(|r| r.strip_suffix(" -->")) {
            file = Some(name.to_owned());
            continue;
        }
        if trimmed == "<!-- test: faucet -->" {
            steps.push(Step::Faucet);
            continue;
        }
        let Some(info) = trimmed.strip_prefix("```") else {
            if !trimmed.is_empty() {
                file = None;
            }
            continue;
        };
        let body: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
        if let Some(name) = file.take() {
            steps.push(Step::File { name, text: body.join("\n") + "\n" });
        } else if info.split_whitespace().next() == Some("sh") {
            let mut commands = Vec::new();
            let mut pending = String::new();
            for line in body {
                let line = line.trim();
                if let Some(head) = line.strip_suffix('\\') {
                    pending.push_str(head);
                    continue;
                }
                pending.push_str(without_comment(line));
                let command = std::mem::take(&mut pending).trim().to_owned();
                if !command.is_empty() && !command.starts_with('#') {
                    commands.push(command);
                }
            }
            steps.push(Step::Shell(commands));
        }
    }
    steps
}

/// `line` without a trailing `# comment` (a `#` after whitespace, outside quotes).
fn without_comment(line: &str) -> &str {
    let mut quote = None;
    let mut previous = ' ';
    for (at, c) in line.char_indices() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), _) if c == q => quote = None,
            (None, '#') if previous.is_whitespace() => return line[..at].trim_end(),
            _ => {}
        }
        previous = c;
    }
    line
}

/// The port a long-running command listens on, or `None` for a command that finishes.
fn long_running(command: &str) -> Option<u16> {
    let words: Vec<&str> = command.split_whitespace().collect();
    match words.as_slice() {
        ["paygate", "serve", rest @ ..] if !rest.contains(&"--check-config") => Some(8402),
        ["paygate", "demo", rest @ ..] if !rest.contains(&"--exit") => Some(8402),
        ["paygate", "dev", "upstream", ..] => Some(9000),
        _ => None,
    }
}

/// A document's run: its directory, its background processes, and the transcript so far.
struct Run {
    dir: tempfile::TempDir,
    transcript: String,
    substitutions: Vec<(String, String)>,
    background: usize,
}

impl Drop for Run {
    fn drop(&mut self) {
        // Stop what the document left running, politely, so the next document finds its ports free.
        if let Ok(pids) = std::fs::read_to_string(self.dir.path().join(".background-pids")) {
            for pid in pids.split_whitespace() {
                let _ = Command::new("kill").arg(pid).status();
            }
            for pid in pids.split_whitespace() {
                for _ in 0..100 {
                    if !Path::new(&format!("/proc/{pid}")).exists() {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
            }
        }
    }
}

impl Run {
    fn new(substitutions: Vec<(String, String)>) -> Run {
        let dir = tempfile::tempdir().expect("temp dir");
        let bin = dir.path().join(".bin");
        std::fs::create_dir(&bin).expect("bin dir");
        std::os::unix::fs::symlink(BIN, bin.join("paygate")).expect("link paygate");
        std::fs::create_dir(dir.path().join("home")).expect("home dir");
        let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
        let env = format!(
            "export PATH='{path}'\nexport HOME='{home}'\nexport PAYGATE_LOG=warn\nunset PAYGATE_HOME PAYGATE_WALLET_KEY \
             PAYGATE_WALLET_KEYSTORE PAYGATE_WALLET_PASSWORD PAYGATE_CONFIG PAYGATE_SPEND_LOG\n",
            home = dir.path().join("home").display()
        );
        std::fs::write(dir.path().join(".env.sh"), env).expect("env file");
        Run { dir, transcript: String::new(), substitutions, background: 0 }
    }

    /// The command as this machine runs it.
    fn substitute(&self, command: &str) -> String {
        let mut command = command
            .replace("cargo run --locked -p paygate-client --example agent --", &agent_example())
            .replace("cargo run --locked -p paygate --", "paygate");
        for (from, to) in &self.substitutions {
            command = command.replace(from, to);
        }
        command
    }

    /// Runs one ```` ```sh ```` block; returns its standard output.
    fn shell(&mut self, doc: &str, commands: &[String]) -> String {
        let mut script = String::from(
            "set -euo pipefail\nsource .env.sh\n\
             wait_for_port() { for _ in $(seq 1 600); do (exec 3<>\"/dev/tcp/127.0.0.1/$1\") 2>/dev/null && return 0; \
             sleep 0.1; done; echo \"nothing listens on port $1 after 60 s\" >&2; return 1; }\n\
             port_free() { if (exec 3<>\"/dev/tcp/127.0.0.1/$1\") 2>/dev/null; then echo \"port $1 is taken\" >&2; \
             return 1; fi; }\n",
        );
        for command in commands {
            if command == "scripts/test" {
                continue;
            }
            let run = self.substitute(command);
            script.push_str(&format!("echo {} >&2\n", shell_quote(&format!("$ {command}"))));
            match long_running(&run) {
                Some(port) => {
                    self.background += 1;
                    let log = format!(".background-{}.log", self.background);
                    script.push_str(&format!(
                        "port_free {port}\n{run} > {log} 2>&1 &\necho $! >> .background-pids\n\
                         wait_for_port {port} || {{ cat {log} >&2; exit 1; }}\n"
                    ));
                }
                None => script.push_str(&format!("{run}\n")),
            }
        }
        script.push_str("export -p > .env.sh\n");
        let output = Command::new("bash")
            .arg("-c")
            .arg(&script)
            .current_dir(self.dir.path())
            .env_remove("PAYGATE_LOG")
            .output()
            .expect("bash runs");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        self.transcript.push_str(&format!("{}{stdout}", String::from_utf8_lossy(&output.stderr)));
        if !output.status.success() {
            let mut logs = String::new();
            for i in 1..=self.background {
                let log = std::fs::read_to_string(self.dir.path().join(format!(".background-{i}.log")));
                logs.push_str(&format!("--- background command {i}:\n{}\n", log.unwrap_or_default()));
            }
            panic!("{doc}: a command failed ({}). Transcript:\n{}\n{logs}", output.status, self.transcript);
        }
        stdout
    }
}

/// The client's example, as `cargo test --workspace` builds it next to the binary.
fn agent_example() -> String {
    let path = Path::new(BIN).parent().expect("target dir").join("examples/agent");
    assert!(path.exists(), "{} is not built: run `cargo build -p paygate-client --example agent`", path.display());
    path.display().to_string()
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// Anvil posing as Base Sepolia: chain 84532, the test token's code at Base Sepolia USDC's address with its
/// EIP-712 name changed to `USDC`, and the official x402 facilitator. Its URLs replace the public ones.
struct BaseSepoliaStandIn {
    chain: Devchain,
    facilitator: node::Facilitator,
    usdc: Address,
}

impl BaseSepoliaStandIn {
    async fn start() -> BaseSepoliaStandIn {
        let chain = Devchain::start(84532).await;
        let usdc: Address = BASE_SEPOLIA_USDC.parse().expect("address");
        // OpenZeppelin's EIP712 keeps keccak256(name) as an immutable in the code and rebuilds the domain for
        // any other address than the one it was deployed at: swapping that hash renames the domain.
        let code = chain.chain.code(chain.token).await.expect("eth_getCode");
        let (from, to) = (keccak256("USD Coin"), keccak256("USDC"));
        let mut patched = code.to_vec();
        let mut swapped = 0;
        for at in 0..patched.len().saturating_sub(31) {
            if patched[at..at + 32] == from[..] {
                patched[at..at + 32].copy_from_slice(&to[..]);
                swapped += 1;
            }
        }
        assert!(swapped > 0, "the test token's code holds no keccak256(\"USD Coin\")");
        chain.rpc("anvil_setCode", serde_json::json!([usdc, Bytes::from(patched)])).await;
        let facilitator = node::Facilitator::start(&chain.rpc_url, 84532, SETTLER_KEY).await;
        BaseSepoliaStandIn { chain, facilitator, usdc }
    }

    fn substitutions(&self) -> Vec<(String, String)> {
        vec![
            ("https://sepolia.base.org".to_owned(), self.chain.rpc_url.clone()),
            ("https://x402.org/facilitator".to_owned(), self.facilitator.url.clone()),
        ]
    }

    /// The faucet: 10 USDC to `to`, minted by the token's minter (dev account 0).
    async fn faucet(&self, to: Address) {
        let chain: Arc<dyn Chain> = self.chain.chain.clone();
        let sender = TxSender::new(chain.clone(), dev_account(0));
        let call = Eip3009Token::mintCall { to, amount: U256::from(10_000_000u64) };
        let hash = sender.send(self.usdc, call.abi_encode().into()).await.expect("mint");
        let mined = wait_for_receipt(
            chain.as_ref(),
            hash,
            std::time::Duration::from_secs(30),
            std::time::Duration::from_millis(100),
        )
        .await
        .expect("receipt");
        assert!(mined.is_some_and(|r| r.status()), "the faucet's mint failed");
    }
}

fn documents() -> Vec<PathBuf> {
    let root = workspace_root();
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    docs.insert(0, root.join("README.md"));
    docs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_in_the_docs_runs_as_written() {
    let stand_in = BaseSepoliaStandIn::start().await;
    let mut ran: BTreeMap<String, usize> = BTreeMap::new();
    for path in documents() {
        let doc = path.strip_prefix(workspace_root()).unwrap_or(&path).display().to_string();
        let markdown = std::fs::read_to_string(&path).expect("readable doc");
        let mut run = Run::new(stand_in.substitutions());
        let mut last_stdout = String::new();
        for step in steps(&markdown) {
            match step {
                Step::Shell(commands) => {
                    *ran.entry(doc.clone()).or_default() += commands.len();
                    last_stdout = tokio::task::block_in_place(|| run.shell(&doc, &commands));
                }
                Step::File { name, text } => std::fs::write(run.dir.path().join(&name), text).expect("write file"),
                Step::Faucet => {
                    let address = last_stdout
                        .split(|c: char| !c.is_ascii_alphanumeric())
                        .filter_map(|word| word.parse::<Address>().ok())
                        .next_back()
                        .unwrap_or_else(|| panic!("{doc}: the faucet needs an address printed before it"));
                    stand_in.faucet(address).await;
                }
            }
        }
    }
    // The Base Sepolia guide's one paid call moved exactly its price to the address the guide sells to.
    let seller: Address = "0xa0Ee7A142d267C1f36714E4a8F75612F20a79720".parse().expect("address");
    let earned = balance_of(stand_in.chain.chain.as_ref(), stand_in.usdc, seller).await.expect("balanceOf");
    assert_eq!(earned, U256::from(10_000u64), "the seller's Base Sepolia USDC after the guide");
    // Each guide has commands, so none of them is silently skipped (a renamed fence, say).
    for doc in ["README.md", "docs/sell-on-base-sepolia.md", "docs/pay-from-an-agent.md", "docs/operate.md"] {
        assert!(ran.get(doc).is_some_and(|n| *n > 0), "no command of {doc} ran: {ran:?}");
    }
}

#[test]
fn ci_runs_the_test_command_the_readme_names() {
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).expect("README");
    let first = steps(&readme)
        .into_iter()
        .find_map(|s| if let Step::Shell(commands) = s { Some(commands) } else { None })
        .expect("the README opens with commands");
    assert!(first.iter().any(|c| c.starts_with("cargo run --locked -p paygate -- demo")), "{first:?}");
    assert!(first.iter().any(|c| c.starts_with("scripts/test")), "{first:?}");
    let ci = std::fs::read_to_string(workspace_root().join(".ci/run")).expect(".ci/run");
    assert!(ci.lines().any(|l| l.starts_with("exec ") && l.ends_with("/scripts/test\"")), "{ci}");
}

#[test]
fn the_library_example_in_the_docs_is_the_one_that_compiles() {
    let guide = std::fs::read_to_string(workspace_root().join("docs/pay-from-an-agent.md")).expect("guide");
    let example =
        std::fs::read_to_string(workspace_root().join("crates/client/examples/agent.rs")).expect("the example");
    let block = guide.split("```rust\n").nth(1).and_then(|rest| rest.split("```").next()).expect("a rust block");
    assert_eq!(block, example, "docs/pay-from-an-agent.md shows another program than crates/client/examples/agent.rs");
}

#[test]
fn every_field_of_the_configuration_is_in_the_reference() {
    // The gateway's tables, the networks, and each rail's `[[accept]]` fields (the test rail is not for operators).
    let root = workspace_root();
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(root.join("crates/gateway/src/config"))
        .expect("config/")
        .map(|e| e.expect("entry").path())
        .collect();
    files.extend(["network.rs", "txhash.rs"].map(|f| root.join("crates/methods/src").join(f)));
    for rail in ["eip3009", "tempo", "stripe", "lightning"] {
        files.push(root.join(format!("crates/methods/src/{rail}/config.rs")));
    }
    let source: String = files.iter().map(|f| std::fs::read_to_string(f).expect("a config source")).collect();
    let reference = std::fs::read_to_string(root.join("docs/configuration.md")).expect("reference");
    let mut missing = Vec::new();
    // The fields of the deserialized structs: `pub name: Type,` lines after a `Deserialize` derive.
    let mut in_config_struct = false;
    for line in source.lines() {
        let line = line.trim();
        if line.starts_with("#[derive(") {
            in_config_struct = line.contains("Deserialize");
        } else if line == "}" || line.starts_with("impl") || line.ends_with(");") {
            in_config_struct = false;
        } else if in_config_struct
            && let Some(field) = line.strip_prefix("pub ").and_then(|r| r.split_once(':')).map(|(name, _)| name)
            && !reference.contains(&format!("`{field}`"))
        {
            missing.push(field.to_owned());
        }
    }
    assert!(missing.is_empty(), "docs/configuration.md does not describe {missing:?}");
}
