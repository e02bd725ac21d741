//! The `bastion` command line: [`args`] is its grammar, [`main`] maps each
//! command to the function that runs it (on one screen); [`serve`] starts the
//! gateway, [`audit`] verifies and reads the trail, [`run`] holds the
//! one-shot commands, and detection on files ([`detect`]), tool pins and
//! manifests ([`tools`]), policy explain and access review ([`policy`]) and
//! the demo upstream and config ([`demo`]) are the libraries they call.
//! `main.rs` only installs the allocator and calls [`main`].

pub(crate) mod args;
pub(crate) mod audit;
pub mod demo;
pub mod detect;
pub mod policy;
pub(crate) mod run;
pub(crate) mod serve;
pub mod tools;

use args::{Cli, Cmd};
use clap::Parser as _;

/// Parses the command line and runs the command. An error is one line on
/// stderr (its cause chain, `error: …: …`) and exit status 1; `-v` adds the
/// backtrace, which users otherwise get whenever RUST_BACKTRACE is set.
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let verbose = cli.verbose;
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            if verbose {
                eprintln!("error: {e:?}");
            } else {
                eprintln!("error: {e:#}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // One way to name the configuration: -c/--config anywhere on the line,
    // or BASTION_CONFIG (positional forms are kept where they existed).
    let config = cli.config;
    let needed = || {
        config.clone().ok_or_else(|| {
            anyhow::anyhow!(
                "this command needs a configuration: give -c FILE or set BASTION_CONFIG"
            )
        })
    };
    match cli.cmd {
        Cmd::Serve => {
            serve::init_tracing();
            let cfg = crate::config::Config::load(&needed()?)?;
            rt.block_on(serve::serve(cfg, None))
        }
        Cmd::Demo { listen } => {
            serve::init_tracing();
            rt.block_on(serve::demo(&listen))
        }
        Cmd::DemoUpstream => Ok(rt.block_on(demo::run_upstream())?),
        Cmd::CheckConfig {
            file,
            skip_unresolved_secrets,
        } => match file.or(config) {
            Some(f) => run::check_config(&f, skip_unresolved_secrets),
            None => Err(anyhow::anyhow!(
                "give the file to check: check-config FILE, -c FILE or BASTION_CONFIG"
            )),
        },
        Cmd::Import { file } => run::import(&file),
        Cmd::DevToken {
            sub,
            scope,
            ttl,
            client_id,
        } => run::dev_token(&needed()?, &sub, &scope, ttl, &client_id),
        Cmd::Policy { cmd } => run::policy(config.as_deref(), cmd),
        Cmd::AccessReview { since, audit, json } => {
            run::access_review(&needed()?, &since, &audit, json)
        }
        Cmd::Audit { cmd } => audit::run(config.as_deref(), cmd),
        Cmd::Tools { json, cmd } => run::tools(&rt, &needed()?, json, cmd),
        Cmd::Manifest { cmd } => run::manifest(cmd),
        Cmd::Detect {
            kind,
            threshold,
            file,
        } => run::detect(kind, threshold, &file),
    }
}
