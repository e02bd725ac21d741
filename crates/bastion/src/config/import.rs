//! `bastion import`: converts the `mcpServers` JSON of Claude Desktop, Cursor and
//! VS Code (`servers`) into `[[upstream]]` tables.
//!
//! Secrets are moved out, never copied: every `env` value and header value of the
//! source becomes a reference (`env:NAME`) that the gateway resolves from its own
//! environment at start-up, and the list of variables to set is returned so the
//! operator can provision them. The values themselves are never written.

use serde_json::Value;

/// The converted configuration and the environment variables it expects.
#[derive(Debug)]
pub struct Imported {
    /// TOML `[[upstream]]` tables.
    pub toml: String,
    /// Variables the operator must set for the gateway (name, why).
    pub required_env: Vec<(String, String)>,
    /// Entries skipped, with the reason.
    pub skipped: Vec<String>,
}

/// Why the input could not be converted.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Not JSON.
    #[error("not valid JSON: {0}")]
    Json(String),
    /// No `mcpServers` / `servers` object.
    #[error("expected an object with an \"mcpServers\" (or \"servers\") object")]
    Shape,
}

fn q(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

fn sanitize(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if s.is_empty() { "server".into() } else { s }
}

fn env_name(server: &str, key: &str) -> String {
    let up = |s: &str| {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect::<String>()
    };
    format!("BASTION_{}_{}", up(server), up(key))
}

/// Converts `mcp.json` text.
pub fn convert(text: &str) -> Result<Imported, ImportError> {
    let v: Value = serde_json::from_str(text).map_err(|e| ImportError::Json(e.to_string()))?;
    let servers = v
        .get("mcpServers")
        .or_else(|| v.get("servers"))
        .and_then(Value::as_object)
        .ok_or(ImportError::Shape)?;
    let mut toml = String::new();
    let mut required_env = Vec::new();
    let mut skipped = Vec::new();
    for (raw_name, s) in servers {
        let name = sanitize(raw_name);
        let url = s.get("url").and_then(Value::as_str);
        let command = s.get("command").and_then(Value::as_str);
        toml.push_str("[[upstream]]\n");
        toml.push_str(&format!("name = {}\n", q(&name)));
        match (url, command) {
            (Some(url), _) => {
                toml.push_str("transport = \"http\"\n");
                toml.push_str(&format!("url = {}\n", q(url)));
                if let Some(h) = s.get("headers").and_then(Value::as_object)
                    && !h.is_empty()
                {
                    toml.push_str("[upstream.headers]\n");
                    for k in h.keys() {
                        let var = env_name(&name, k);
                        toml.push_str(&format!("{} = {}\n", q(k), q(&format!("env:{var}"))));
                        required_env.push((var, format!("header {k} of upstream {name}")));
                    }
                }
            }
            (None, Some(cmd)) => {
                toml.push_str("transport = \"stdio\"\n");
                toml.push_str(&format!("command = {}\n", q(cmd)));
                let args: Vec<String> = s
                    .get("args")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_str).map(q).collect())
                    .unwrap_or_default();
                toml.push_str(&format!("args = [{}]\n", args.join(", ")));
                if let Some(cwd) = s.get("cwd").and_then(Value::as_str) {
                    toml.push_str(&format!("cwd = {}\n", q(cwd)));
                }
                toml.push_str("[upstream.env]\n");
                // Most servers need PATH to find their interpreter; it is not secret.
                toml.push_str("PATH = \"env:PATH\"\n");
                if let Some(env) = s.get("env").and_then(Value::as_object) {
                    for k in env.keys() {
                        if k == "PATH" {
                            continue;
                        }
                        let var = env_name(&name, k);
                        toml.push_str(&format!("{} = {}\n", q(k), q(&format!("env:{var}"))));
                        required_env.push((var, format!("env {k} of upstream {name}")));
                    }
                }
            }
            (None, None) => {
                // Drop the partial table header written above.
                let cut = toml.rfind("[[upstream]]\n").unwrap_or(toml.len());
                toml.truncate(cut);
                skipped.push(format!("{raw_name}: neither \"command\" nor \"url\""));
                continue;
            }
        }
        toml.push('\n');
    }
    Ok(Imported {
        toml,
        required_env,
        skipped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_and_moves_secrets_out() {
        let src = r#"{"mcpServers": {
            "github": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-github"],
                       "env": {"GITHUB_PERSONAL_ACCESS_TOKEN": "ghp_supersecretvalue"}},
            "remote api": {"url": "https://mcp.example.com/mcp", "headers": {"Authorization": "Bearer sk-live-123"}},
            "broken": {}
        }}"#;
        let out = convert(src).unwrap();
        assert!(!out.toml.contains("ghp_supersecretvalue"));
        assert!(!out.toml.contains("sk-live-123"));
        assert!(
            out.toml
                .contains("env:BASTION_GITHUB_GITHUB_PERSONAL_ACCESS_TOKEN")
        );
        assert!(out.toml.contains("name = \"remote_api\""));
        assert_eq!(out.skipped.len(), 1);
        assert_eq!(out.required_env.len(), 2);
        // The output parses as upstream tables of a valid config.
        let full = format!(
            "[policy]\nfiles = [\"policies/*.cedar\"]\n[auth]\nmode = \"dangerous_none\"\n{}",
            out.toml
        );
        // SAFETY of the test: every referenced variable must exist for validation;
        // PATH does, the others do not, so validation names the first missing one.
        let e = crate::config::Config::parse(&full, "import.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("BASTION_"), "{e}");
    }
}
