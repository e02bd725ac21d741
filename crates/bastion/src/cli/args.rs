//! The command line's grammar: every subcommand, its arguments and their
//! help text. Parsing only; [`super::main`] runs what was parsed.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::Config;

/// mcp-bastion: a security gateway for the Model Context Protocol.
#[derive(Debug, Parser)]
#[command(name = "bastion", version, about)]
pub(crate) struct Cli {
    /// The configuration file (TOML), before or after the subcommand; also
    /// taken from BASTION_CONFIG.
    #[arg(
        short = 'c',
        long = "config",
        global = true,
        env = "BASTION_CONFIG",
        value_name = "FILE"
    )]
    pub(crate) config: Option<PathBuf>,
    /// On an error, print its full chain and backtrace (with RUST_BACKTRACE=1).
    #[arg(short, long, global = true)]
    pub(crate) verbose: bool,
    #[command(subcommand)]
    pub(crate) cmd: Cmd,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Cmd {
    /// Run the gateway.
    Serve,
    /// Validate a configuration file as `serve` would: its settings, policy
    /// files and certificates (exit 0: `serve` would start; 1: it would not,
    /// each problem named).
    CheckConfig {
        /// Configuration file (TOML); the same as -c FILE.
        file: Option<PathBuf>,
        /// Check a configuration on a machine that lacks its upstreams'
        /// secrets: references that cannot be resolved here are accepted
        /// (malformed ones are still refused).
        #[arg(long)]
        skip_unresolved_secrets: bool,
    },
    /// Convert an `mcpServers` JSON file (Claude Desktop, VS Code, Cursor) into
    /// `[[upstream]]` tables on stdout.
    Import {
        /// The JSON file.
        file: PathBuf,
    },
    /// Run the gateway on loopback in front of the built-in demo upstream.
    Demo {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
    },
    /// Mint a short-lived access token from the development issuer of a
    /// `dangerous_dev_issuer` configuration (local use only).
    DevToken {
        /// Subject (user) of the token.
        #[arg(long)]
        sub: String,
        /// Scopes, space-separated or repeated.
        #[arg(long)]
        scope: Vec<String>,
        /// Lifetime in seconds (at most 3600).
        #[arg(long, default_value_t = 600)]
        ttl: u64,
        /// Client id recorded in the token.
        #[arg(long, default_value = "bastion-dev-token")]
        client_id: String,
    },
    /// Check policy files, or explain one decision.
    Policy {
        #[command(subcommand)]
        cmd: PolicyCmd,
    },
    /// Per principal: what the policies grant against what the audit trail
    /// shows was used (least-privilege review).
    AccessReview {
        /// The period reviewed: 30d, 12h, 90m, 3600s.
        #[arg(long, default_value = "30d")]
        since: String,
        /// Audit files to read (default: the configuration's `[audit] path`).
        #[arg(long)]
        audit: Vec<PathBuf>,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The audit trail: verify it.
    Audit {
        #[command(subcommand)]
        cmd: AuditCmd,
    },
    /// Tool integrity: review, approve, reject and roll back definitions on
    /// the running gateway (through its admin API).
    Tools {
        /// Machine-readable output.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        cmd: ToolsCmd,
    },
    /// Signed tool manifests.
    Manifest {
        #[command(subcommand)]
        cmd: ManifestCmd,
    },
    /// Run the detection engine over a JSONL file (one `{"id", "tool" | "text", "label"?}`
    /// per line): one verdict per line, then precision/recall when labelled.
    Detect {
        /// What the rows hold.
        #[arg(long, value_enum)]
        kind: crate::cli::detect::DetectKind,
        /// Score at or above which a row is an attack.
        #[arg(long, default_value_t = 0.5)]
        threshold: f32,
        /// The JSONL file ("-" for standard input).
        file: PathBuf,
    },
    /// The built-in demo MCP server on stdio (what `demo` runs as its upstream).
    #[command(hide = true)]
    DemoUpstream,
}

/// Names one pinned item.
#[derive(Debug, clap::Args)]
pub(crate) struct ItemArgs {
    /// The upstream's name.
    pub(crate) upstream: String,
    /// The item's own name on that upstream (omit for --kind instructions).
    pub(crate) name: Option<String>,
    /// tool, prompt, template or instructions.
    #[arg(long, default_value = "tool")]
    pub(crate) kind: String,
}

impl ItemArgs {
    pub(crate) fn into_item(self) -> anyhow::Result<crate::cli::tools::ItemArg> {
        if self.kind != "instructions" && self.name.is_none() {
            anyhow::bail!("name the {} (or use --kind instructions)", self.kind);
        }
        Ok(crate::cli::tools::ItemArg {
            upstream: self.upstream,
            kind: self.kind,
            name: self.name.unwrap_or_default(),
        })
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum ToolsCmd {
    /// Every pinned definition and its accepted version.
    List {
        /// Only this upstream.
        #[arg(long)]
        upstream: Option<String>,
    },
    /// Definitions waiting for review, riskiest first.
    Pending,
    /// A unified diff of the canonical JSON (default: accepted vs newest pending).
    Diff {
        #[command(flatten)]
        item: ItemArgs,
        /// From this version.
        #[arg(long)]
        from: Option<u32>,
        /// To this version.
        #[arg(long)]
        to: Option<u32>,
    },
    /// Approve a version (default: the newest pending one); it is exposed at once.
    Approve {
        #[command(flatten)]
        item: ItemArgs,
        /// The version to approve.
        #[arg(long)]
        version: Option<u32>,
    },
    /// Reject a version (default: the newest pending one).
    Reject {
        #[command(flatten)]
        item: ItemArgs,
        /// The version to reject.
        #[arg(long)]
        version: Option<u32>,
    },
    /// Every version, who decided it and when.
    History {
        #[command(flatten)]
        item: ItemArgs,
    },
    /// Make an earlier approved version the only accepted one again.
    Rollback {
        #[command(flatten)]
        item: ItemArgs,
        /// The version to return to.
        #[arg(long)]
        to: u32,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum ManifestCmd {
    /// Sign a manifest: writes MANIFEST.sig and prints the manifest_key line.
    Sign {
        /// The Ed25519 private key file (created with mode 0600 when missing).
        #[arg(long)]
        key: PathBuf,
        /// The manifest (JSON with "tools", optionally "prompts",
        /// "resourceTemplates", "instructions").
        manifest: PathBuf,
    },
    /// Verify a manifest's signature and list what it pins (exit 3 if invalid).
    Verify {
        /// The public key, ed25519:<base64>.
        #[arg(long)]
        key: String,
        /// The manifest.
        manifest: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum AuditCmd {
    /// Verify the chain and every checkpoint of one log (rotated files in any
    /// order); exit 0 only when all of it verifies, else name the first bad
    /// record.
    Verify {
        /// Trusted checkpoint public key(s), `ed25519:<base64>` (repeatable).
        #[arg(long)]
        key: Vec<String>,
        /// Accept a last record that is not a checkpoint (a live or crashed log).
        #[arg(long)]
        open_tail: bool,
        /// Accept a chain that does not start at record 0 (older files removed).
        #[arg(long)]
        partial: bool,
        /// The log files.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// The events of a principal and/or session, in order.
    Timeline {
        #[command(flatten)]
        log: LogArgs,
        /// The principal (`sub`).
        #[arg(long)]
        principal: Option<String>,
        /// The session: its id, or its digest as the trail records it.
        // Session ids are base64url: one may start with `-`.
        #[arg(long, allow_hyphen_values = true)]
        session: Option<String>,
        /// Only events in this period: 30d, 12h, 90m, 3600s.
        #[arg(long)]
        since: Option<String>,
        /// JSON lines instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Write an evidence bundle (events, checkpoints, verification, manifest).
    Export {
        #[command(flatten)]
        log: LogArgs,
        /// The session: its id, or its digest.
        // Session ids are base64url: one may start with `-`.
        #[arg(long, allow_hyphen_values = true)]
        session: Option<String>,
        /// The principal (`sub`).
        #[arg(long)]
        principal: Option<String>,
        /// Only events in this period.
        #[arg(long)]
        since: Option<String>,
        /// The bundle's directory (created; existing files are not overwritten).
        #[arg(long)]
        out: PathBuf,
    },
    /// What a principal touched: upstreams, tools, resources, prompts,
    /// sessions, volumes, first and last seen.
    Impact {
        #[command(flatten)]
        log: LogArgs,
        /// The principal (`sub`).
        #[arg(long)]
        principal: String,
        /// Only events in this period.
        #[arg(long)]
        since: Option<String>,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Which log to read.
#[derive(Debug, clap::Args)]
pub(crate) struct LogArgs {
    /// Log files instead (any order).
    #[arg(long = "log")]
    pub(crate) files: Vec<PathBuf>,
}

impl LogArgs {
    /// The files in chain order, and the trusted key when a configuration
    /// (`-c`) names one.
    pub(crate) fn resolve(
        &self,
        config: Option<&std::path::Path>,
    ) -> anyhow::Result<(Vec<PathBuf>, Vec<Vec<u8>>)> {
        let mut keys = Vec::new();
        let mut files = self.files.clone();
        if let Some(c) = config {
            let cfg = Config::load_for_operator(c)?;
            files.extend(crate::audit::forensics::log_files(&cfg.audit.path));
            let text = match &cfg.audit.signing_key {
                Some(s) => Some(s.expose_secret().to_owned()),
                None => std::fs::read_to_string(format!("{}.key", cfg.audit.path.display())).ok(),
            };
            if let Some(t) = text {
                let s = bastion_audit::Signer::from_text(&t)?;
                keys.push(bastion_audit::chain::parse_public(&s.public())?);
            }
        }
        if files.is_empty() {
            anyhow::bail!("give -c FILE (or BASTION_CONFIG) or --log FILE...");
        }
        Ok((files, keys))
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum PolicyCmd {
    /// Validate policies strictly against the schema (exit 0 = valid).
    Check {
        /// Policy files to check (instead of, or besides, the configuration's).
        files: Vec<PathBuf>,
    },
    /// Decide one request and say why (exit 0 = allow, 3 = deny).
    Explain {
        /// Policy files (instead of a configuration).
        #[arg(long = "policies")]
        policies: Vec<PathBuf>,
        /// A subject, or JSON: {"sub": "...", "groups": [...], "scopes": [...], "roles": [...], "issuer": "...", "client_id": "..."}.
        #[arg(long)]
        principal: String,
        /// The action, spelled as the MCP method (tools/call, tools/list, ...).
        #[arg(long)]
        action: String,
        /// Bastion::Tool::"upstream/name", or tool:upstream/name, prompt:…, resource:…, upstream:NAME, gateway.
        #[arg(long)]
        resource: String,
        /// JSON: {"arguments": {...}, "time": SECONDS, "client_ip": "...", "session_risk": N}.
        #[arg(long)]
        context: Option<String>,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_id_starting_with_a_hyphen_is_a_value() {
        for cmd in ["timeline", "export"] {
            let mut argv = vec!["bastion", "audit", cmd, "--log", "a.jsonl"];
            argv.extend(["--session", "-tQ4x_session"]);
            if cmd == "export" {
                argv.extend(["--out", "bundle"]);
            }
            let cli = Cli::try_parse_from(&argv).map_err(|e| e.to_string());
            let session = match cli.map(|c| c.cmd) {
                Ok(Cmd::Audit {
                    cmd: AuditCmd::Timeline { session, .. } | AuditCmd::Export { session, .. },
                }) => session,
                other => panic!("{cmd}: {other:?}"),
            };
            assert_eq!(session.as_deref(), Some("-tQ4x_session"), "{cmd}");
        }
    }
}
