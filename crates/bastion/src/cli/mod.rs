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
    match cli.cmd {
        Cmd::Serve { config } => {
            serve::init_tracing();
            let cfg = crate::config::Config::load(&config)?;
            rt.block_on(serve::serve(cfg, None))
        }
        Cmd::Demo { listen } => {
            serve::init_tracing();
            rt.block_on(serve::demo(&listen))
        }
        Cmd::DemoUpstream => Ok(rt.block_on(demo::run_upstream())?),
        Cmd::CheckConfig { file } => run::check_config(&file),
        Cmd::Import { file } => run::import(&file),
        Cmd::DevToken {
            config,
            sub,
            scope,
            ttl,
            client_id,
        } => run::dev_token(&config, &sub, &scope, ttl, &client_id),
        Cmd::Policy { cmd } => run::policy(cmd),
        Cmd::AccessReview {
            config,
            since,
            audit,
            json,
        } => run::access_review(&config, &since, &audit, json),
        Cmd::Audit { cmd } => audit::run(cmd),
        Cmd::Tools { config, json, cmd } => run::tools(&rt, &config, json, cmd),
        Cmd::Manifest { cmd } => run::manifest(cmd),
        Cmd::Detect {
            kind,
            threshold,
            file,
        } => run::detect(kind, threshold, &file),
    }
}
