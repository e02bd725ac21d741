//! Secret scanner: credentials and keys in text, by provider shape and by keyword.
//!
//! Owns the provider table (the detect-secrets plugin set: AWS, Azure storage, basic-auth URLs,
//! Cloudant, Discord, GitHub, GitLab, IBM Cloud IAM and COS HMAC, JWT, Mailchimp, npm, OpenAI,
//! private keys, PyPI, SendGrid, Slack, SoftLayer, Square, Stripe, Telegram, Twilio, Artifactory;
//! plus Anthropic, Google API keys, Hugging Face and Stripe webhook secrets) and the
//! keyword-anchored rule (`password = "…"` and kin) that requires the value to look random.
//!
//! Invariants: spans are byte ranges of the scanned text on character boundaries; matches never
//! overlap (the first, longest wins); the secret text itself is only ever returned as a span,
//! never copied into a finding.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex::Regex;

/// One detected secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecretMatch {
    /// Rule ID (`secret.<provider>`).
    pub rule: &'static str,
    /// Typed placeholder name used when redacting.
    pub kind: &'static str,
    /// Byte span.
    pub start: usize,
    /// End of the span.
    pub end: usize,
}

struct Provider {
    rule: &'static str,
    kind: &'static str,
    anchors: &'static [&'static str],
    pattern: &'static str,
}

const fn p(
    rule: &'static str,
    kind: &'static str,
    anchors: &'static [&'static str],
    pattern: &'static str,
) -> Provider {
    Provider {
        rule,
        kind,
        anchors,
        pattern,
    }
}

static PROVIDERS: &[Provider] = &[
    p(
        "secret.aws_access_key",
        "aws_access_key",
        &["AKIA", "ASIA", "ABIA", "ACCA", "A3T"],
        r"\b(AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z0-9]{16}\b",
    ),
    p(
        "secret.aws_secret_key",
        "aws_secret_key",
        &[
            "aws_secret",
            "AWS_SECRET",
            "aws_secret_access_key",
            "SecretAccessKey",
        ],
        r#"(?i)(aws_?secret_?(access_?)?key|secretaccesskey)["']?\s*[:=]\s*["']?[A-Za-z0-9/+=]{40}\b"#,
    ),
    p(
        "secret.azure_storage_key",
        "azure_storage_key",
        &["AccountKey="],
        r"AccountKey=[A-Za-z0-9+/=]{86,88}",
    ),
    p(
        "secret.basic_auth_url",
        "url_credentials",
        &["://"],
        r"\b[a-zA-Z][a-zA-Z0-9+.-]{1,20}://[^:/?#\s@'\x22<>]{1,64}:[^@/?#\s'\x22<>]{3,128}@[a-zA-Z0-9.-]+",
    ),
    p(
        "secret.github_token",
        "github_token",
        &["ghp_", "gho_", "ghu_", "ghs_", "ghr_"],
        r"\bgh[pousr]_[A-Za-z0-9]{36,255}\b",
    ),
    p(
        "secret.github_fine_grained",
        "github_token",
        &["github_pat_"],
        r"\bgithub_pat_[A-Za-z0-9_]{60,255}\b",
    ),
    p(
        "secret.gitlab_token",
        "gitlab_token",
        &[
            "glpat-",
            "gldt-",
            "glrt-",
            "glptt-",
            "glcbt-",
            "glsoat-",
            "glffct-",
            "glimt-",
            "gloas-",
            "GR1348941",
        ],
        r"\b((glpat|gldt|glrt|glptt|glcbt|glsoat|glffct|glimt|gloas)-[A-Za-z0-9_-]{20,}|GR1348941[A-Za-z0-9_-]{20,})",
    ),
    p(
        "secret.ibm_cloud_iam",
        "ibm_cloud_key",
        &["ibm", "IBM", "iam_api", "IAM_API"],
        r#"(?i)\b(ibm[\w-]{0,20}|iam[_-]?)(api[_-]?key|apikey|key)["']?\s*[:=]\s*["']?[a-zA-Z0-9_-]{44}\b"#,
    ),
    p(
        "secret.ibm_cos_hmac",
        "ibm_cos_hmac",
        &[
            "secret_access_key",
            "SECRET_ACCESS_KEY",
            "secret-access-key",
        ],
        r#"(?i)secret[_-]access[_-]key["']?\s*[:=]\s*["']?[a-f0-9]{48}\b"#,
    ),
    p(
        "secret.jwt",
        "jwt",
        &["eyJ"],
        r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",
    ),
    p(
        "secret.mailchimp",
        "mailchimp_key",
        &["-us"],
        r"\b[0-9a-f]{32}-us[0-9]{1,2}\b",
    ),
    p(
        "secret.npm_token",
        "npm_token",
        &["npm_", "_authToken"],
        r"(\bnpm_[A-Za-z0-9]{36}\b|_authToken=[A-Za-z0-9_-]{20,})",
    ),
    p(
        "secret.openai_key",
        "openai_key",
        &["sk-"],
        r"\bsk-((proj|svcacct|admin)-[A-Za-z0-9_-]{40,}|[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20}|[A-Za-z0-9_-]{20,}T3BlbkFJ[A-Za-z0-9_-]{20,})",
    ),
    p(
        "secret.anthropic_key",
        "anthropic_key",
        &["sk-ant-"],
        r"\bsk-ant-(api|admin|sid)\d{2}-[A-Za-z0-9_-]{80,}",
    ),
    p(
        "secret.private_key",
        "private_key",
        &["-----BEGIN", "PuTTY-User-Key-File"],
        r"(-----BEGIN ([A-Z0-9]+ ){0,2}PRIVATE KEY( BLOCK)?-----([\s\S]{0,8000}?-----END ([A-Z0-9]+ ){0,2}PRIVATE KEY( BLOCK)?-----)?|PuTTY-User-Key-File-\d: .*)",
    ),
    p(
        "secret.pypi_token",
        "pypi_token",
        &["pypi-AgE"],
        r"\bpypi-AgE(IcHlwaS5vcmc|NdGVzdC5weXBpLm9yZw)[A-Za-z0-9_-]{50,}",
    ),
    p(
        "secret.sendgrid_key",
        "sendgrid_key",
        &["SG."],
        r"\bSG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}\b",
    ),
    p(
        "secret.slack_token",
        "slack_token",
        &["xox"],
        r"\bxox[abposre]-[0-9A-Za-z-]{10,}",
    ),
    p(
        "secret.slack_webhook",
        "slack_webhook",
        &["hooks.slack.com"],
        r"https://hooks\.slack\.com/(services|workflows|triggers)/[A-Za-z0-9+/_-]{20,}",
    ),
    p(
        "secret.softlayer_key",
        "softlayer_key",
        &["softlayer", "SOFTLAYER", "SoftLayer", "api.softlayer.com"],
        r#"(?i)(softlayer[\w-]{0,20}(api[_-]?key|key)["']?\s*[:=]\s*["']?[a-z0-9]{64}\b|api\.softlayer\.com/soap/v3(\.1)?/[a-z0-9]{64})"#,
    ),
    p(
        "secret.square_token",
        "square_token",
        &["sq0atp-", "sq0csp-", "EAAA"],
        r"\b(sq0atp-[0-9A-Za-z_-]{22}|sq0csp-[0-9A-Za-z_-]{43}|EAAA[a-zA-Z0-9_-]{60})\b",
    ),
    p(
        "secret.stripe_key",
        "stripe_key",
        &["sk_live_", "rk_live_", "sk_test_", "rk_test_", "whsec_"],
        r"\b((sk|rk)_(live|test)_[0-9a-zA-Z]{24,}|whsec_[A-Za-z0-9]{32,})\b",
    ),
    p(
        "secret.telegram_token",
        "telegram_token",
        &[":AA"],
        r"\b\d{8,10}:AA[0-9A-Za-z_-]{33}\b",
    ),
    p(
        "secret.google_api_key",
        "google_api_key",
        &["AIza"],
        r"\bAIza[0-9A-Za-z_-]{35}\b",
    ),
    p(
        "secret.huggingface_token",
        "huggingface_token",
        &["hf_"],
        r"\bhf_[A-Za-z0-9]{34,}\b",
    ),
    p(
        "secret.artifactory_token",
        "artifactory_token",
        &["AKC", "AP"],
        r"\b(AKC[a-zA-Z0-9]{10,}|AP[0-9ABCDEF][a-zA-Z0-9]{8,})\b",
    ),
    p(
        "secret.cloudant",
        "cloudant_credentials",
        &["cloudant"],
        r"(?i)https?://[\w-]+:([0-9a-f]{64}|[a-z]{24})@[\w-]+\.cloudant\.com",
    ),
];

/// Providers whose anchor sits inside the token (a URL's `://`, a suffix): matched in a window
/// around the anchor. Every other provider's token starts at its anchor and is matched there,
/// anchored, which costs only as much as the token is long.
const WINDOWED: &[&str] = &[
    "secret.basic_auth_url",
    "secret.mailchimp",
    "secret.slack_webhook",
    "secret.telegram_token",
    "secret.cloudant",
];

/// Keywords that announce a secret value.
static KEYWORDS: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "passphrase",
    "secret",
    "token",
    "api_key",
    "apikey",
    "api-key",
    "access_key",
    "access-key",
    "auth_key",
    "client_secret",
    "private_key",
    "credential",
    "authorization",
    "bearer",
    "x-api-key",
];

const KEYWORD_VALUE: &str = r#"(?i)^[\w.-]{0,20}["']?\s*(:=|=>|==|=|:)\s*(["'`]?)(bearer\s+|basic\s+|token\s+)?([^\s"'`,;<>(){}\[\]]{8,200})"#;

/// Discord bot tokens and Twilio keys have no distinctive prefix; they are checked on each
/// long token-like run.
const DISCORD: &str = r"^[MNO][a-zA-Z\d_-]{23,25}\.[a-zA-Z\d_-]{6}\.[a-zA-Z\d_-]{27,38}$";
const TWILIO: &str = r"^(SK|AC)[0-9a-fA-F]{32}$";

/// An anchor with its index in the scanner's anchor list.
type Numbered<'a> = (usize, &'a str);

/// The compiled scanner.
#[derive(Debug)]
pub struct Scanner {
    /// Anchors of three bytes or more.
    anchors: AhoCorasick,
    /// Index in `anchor_provider` of each pattern of `anchors`.
    anchor_index: Vec<usize>,
    /// Two-byte anchors, each searched on its own: in the set above, one two-byte anchor
    /// makes the SIMD prefilter fingerprint two bytes for every anchor, and pairs as common
    /// as "ho" or "sk" then stop it all through prose.
    pairs: Vec<(memchr::memmem::Finder<'static>, usize)>,
    anchor_provider: Vec<Vec<usize>>,
    patterns: Vec<Regex>,
    keywords: AhoCorasick,
    keyword_value: Regex,
    discord: Regex,
    twilio: Regex,
}

/// Shannon entropy in bits per character.
#[must_use]
pub fn entropy(s: &str) -> f64 {
    let mut counts = [0u32; 256];
    let mut n = 0u32;
    for b in s.bytes() {
        if let Some(c) = counts.get_mut(usize::from(b)) {
            *c = c.saturating_add(1);
        }
        n = n.saturating_add(1);
    }
    if n == 0 {
        return 0.0;
    }
    let n = f64::from(n);
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

/// Whether a keyword's value is a real secret rather than a placeholder, a type or a word.
fn secret_value(value: &str) -> bool {
    let lower = value.to_ascii_lowercase();
    const PLACEHOLDERS: &[&str] = &[
        "your",
        "xxx",
        "***",
        "...",
        "example",
        "changeme",
        "placeholder",
        "dummy",
        "redacted",
        "<",
        "${",
        "{{",
        "%s",
        "env[",
        "process.env",
        "os.environ",
        "getenv",
        "none",
        "null",
        "undefined",
        "true",
        "false",
        "string",
        "required",
        "optional",
        "boolean",
        "integer",
        "number",
        "secret",
        "password",
        "token",
        "here",
        "insert",
        "replace",
        "todo",
        "test",
        "sample",
        "fake",
        "mask",
        "hidden",
    ];
    if PLACEHOLDERS.iter().any(|p| lower.contains(p))
        || value.starts_with(['$', '%', '#', '/', '.', '-'])
    {
        return false;
    }
    let classes = [
        value.bytes().any(|b| b.is_ascii_lowercase()),
        value.bytes().any(|b| b.is_ascii_uppercase()),
        value.bytes().any(|b| b.is_ascii_digit()),
        value.bytes().any(|b| !b.is_ascii_alphanumeric()),
    ]
    .iter()
    .filter(|&&c| c)
    .count();
    // URLs, paths and dotted identifiers are configuration, not secrets.
    if value.contains("://") || value.matches('.').count() >= 2 || value.matches('/').count() >= 2 {
        return false;
    }
    (classes >= 3 && value.len() >= 8)
        || (classes >= 2 && entropy(value) >= 3.5 && value.len() >= 12)
}

impl Scanner {
    /// Compile the provider table.
    ///
    /// # Errors
    /// When a pattern does not compile (a defect in the table).
    pub fn new() -> Result<Self, crate::rules::CompileError> {
        let err = |e: &dyn std::fmt::Display| crate::rules::CompileError::new(e.to_string());
        let mut anchors: Vec<&str> = Vec::new();
        let mut anchor_provider: Vec<Vec<usize>> = Vec::new();
        for (index, provider) in PROVIDERS.iter().enumerate() {
            for anchor in provider.anchors {
                if let Some(pos) = anchors.iter().position(|a| a == anchor) {
                    if let Some(list) = anchor_provider.get_mut(pos) {
                        list.push(index);
                    }
                } else {
                    anchors.push(anchor);
                    anchor_provider.push(vec![index]);
                }
            }
        }
        // Non-overlapping scan; an anchor stands for every anchor it contains ("sk-ant-" also
        // triggers the "sk-" providers).
        let anchor_provider: Vec<Vec<usize>> = anchors
            .iter()
            .map(|outer| {
                let mut list: Vec<usize> = anchors
                    .iter()
                    .zip(&anchor_provider)
                    .filter(|(inner, _)| outer.contains(*inner))
                    .flat_map(|(_, l)| l.iter().copied())
                    .collect();
                list.sort_unstable();
                list.dedup();
                list
            })
            .collect();
        let (long, short): (Vec<Numbered<'_>>, Vec<Numbered<'_>>) = anchors
            .iter()
            .copied()
            .enumerate()
            .partition(|(_, a)| a.len() >= 3);
        let anchors_ac = AhoCorasickBuilder::new()
            .match_kind(MatchKind::LeftmostLongest)
            .build(long.iter().map(|(_, a)| a))
            .map_err(|e| err(&e))?;
        // At one start the longest anchor wins; a pair that opens a longer anchor would lose
        // to it in the set but not on its own, so the split requires there is none.
        if short
            .iter()
            .any(|(_, pair)| long.iter().any(|(_, a)| a.starts_with(pair)))
        {
            return Err(err(&"a two-byte secret anchor opens a longer one"));
        }
        let pairs = short
            .iter()
            .map(|&(index, pair)| {
                (
                    memchr::memmem::Finder::new(pair.as_bytes()).into_owned(),
                    index,
                )
            })
            .collect();
        let patterns = PROVIDERS
            .iter()
            .map(|p| {
                if WINDOWED.contains(&p.rule) {
                    Regex::new(p.pattern)
                } else {
                    Regex::new(&format!(r"\A(?:{})", p.pattern))
                }
                .map_err(|e| err(&e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        // Matched on lower-cased text (see `scan`): a case-sensitive set runs on a SIMD
        // prefilter, where a case-insensitive one walks every byte through the automaton.
        let keywords = AhoCorasickBuilder::new()
            .match_kind(MatchKind::LeftmostLongest)
            .build(KEYWORDS.iter().map(|k| k.to_ascii_lowercase()))
            .map_err(|e| err(&e))?;
        Ok(Self {
            anchors: anchors_ac,
            anchor_index: long.iter().map(|(index, _)| *index).collect(),
            pairs,
            anchor_provider,
            patterns,
            keywords,
            keyword_value: Regex::new(KEYWORD_VALUE).map_err(|e| err(&e))?,
            discord: Regex::new(DISCORD).map_err(|e| err(&e))?,
            twilio: Regex::new(TWILIO).map_err(|e| err(&e))?,
        })
    }

    /// Every secret in `text`, in order, non-overlapping.
    #[must_use]
    pub fn scan(&self, text: &str) -> Vec<SecretMatch> {
        let mut found: Vec<SecretMatch> = Vec::new();
        let bytes = text.as_bytes();
        // Anchor hits in start order, one per start (the longest there): the set's, merged
        // with the pairs' (no pair opens a longer anchor, so the two never share a start).
        let mut hits: Vec<(usize, usize, usize)> = crate::rules::starts(&self.anchors, text)
            .filter_map(|m| {
                let index = *self.anchor_index.get(m.pattern().as_usize())?;
                Some((m.start(), m.end(), index))
            })
            .collect();
        let from_set = hits.len();
        for (finder, index) in &self.pairs {
            hits.extend(
                finder
                    .find_iter(bytes)
                    .map(|at| (at, at.saturating_add(finder.needle().len()), *index)),
            );
        }
        if hits.len() > from_set {
            hits.sort_unstable_by_key(|&(start, _, _)| start);
        }
        for (m_start, m_end, anchor) in hits {
            let Some(providers) = self.anchor_provider.get(anchor) else {
                continue;
            };
            for &index in providers {
                let (Some(provider), Some(re)) = (PROVIDERS.get(index), self.patterns.get(index))
                else {
                    continue;
                };
                let reach = if provider.kind == "private_key" {
                    9000
                } else {
                    400
                };
                let span = if WINDOWED.contains(&provider.rule) {
                    let from = crate::rules::floor_boundary(text, m_start.saturating_sub(80));
                    let to = crate::rules::ceil_boundary(text, m_end.saturating_add(reach));
                    // Offsets in the window, moved back to the text (within it).
                    text.get(from..to).and_then(|window| {
                        re.find_iter(window)
                            .map(|h| (from.saturating_add(h.start()), from.saturating_add(h.end())))
                            .find(|&(s, e)| s <= m_start && e >= m_end)
                    })
                } else {
                    // The token starts at the anchor, which must start a word.
                    if m_start
                        .checked_sub(1)
                        .and_then(|before| bytes.get(before))
                        .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_')
                    {
                        continue;
                    }
                    let to = crate::rules::ceil_boundary(text, m_start.saturating_add(reach));
                    text.get(m_start..to)
                        .and_then(|tail| re.find(tail))
                        .map(|h| {
                            (
                                m_start.saturating_add(h.start()),
                                m_start.saturating_add(h.end()),
                            )
                        })
                };
                if let Some((mut start, end)) = span {
                    // Patterns that assert what precedes a token include it in the match.
                    start = start.saturating_add(
                        bytes
                            .get(start..end)
                            .unwrap_or_default()
                            .iter()
                            .take_while(|b| {
                                matches!(b, b' ' | b'\t' | b'\n' | b'=' | b':' | b'"' | b'\'')
                            })
                            .count(),
                    );
                    push(
                        &mut found,
                        SecretMatch {
                            rule: provider.rule,
                            kind: provider.kind,
                            start,
                            end,
                        },
                    );
                }
            }
        }
        // Lower-casing ASCII keeps every offset.
        for m in self
            .keywords
            .find_iter(crate::normalize::ascii_lower(text).as_ref())
        {
            let Some(rest) =
                text.get(m.end()..crate::rules::ceil_boundary(text, m.end().saturating_add(260)))
            else {
                continue;
            };
            let Some(caps) = self.keyword_value.captures(rest) else {
                continue;
            };
            let Some(value) = caps.get(4) else { continue };
            if secret_value(value.as_str()) {
                // The value's offsets in `rest`, moved back to the text (within it).
                let start = m.end().saturating_add(value.start());
                push(
                    &mut found,
                    SecretMatch {
                        rule: "secret.keyword",
                        kind: "secret",
                        start,
                        end: m.end().saturating_add(value.end()),
                    },
                );
            }
        }
        self.token_runs(text, &mut found);
        found.sort_by_key(|s| s.start);
        found
    }

    /// Discord and Twilio shapes on each long token-like run.
    fn token_runs(&self, text: &str, found: &mut Vec<SecretMatch>) {
        let bytes = text.as_bytes();
        let token = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.');
        let token_lanes = |x: u64| {
            use crate::swar::{alnum, equal};
            alnum(x) | equal(x, b'_') | equal(x, b'-') | equal(x, b'.')
        };
        let mut i = 0;
        while i < bytes.len() {
            // Jump to the next run long enough to be a token (prose has none).
            let Some(next) =
                crate::swar::next_long_run(bytes, i, 34, (b'-' - 1, b'z' + 1), token_lanes, token)
            else {
                break;
            };
            // The run, measured in the bytes that are there: `i` stays within the text.
            let len = bytes
                .get(next..)
                .unwrap_or_default()
                .iter()
                .take_while(|&&b| token(b))
                .count();
            if len == 0 {
                i = next.saturating_add(1);
                continue;
            }
            let start = next;
            i = start.saturating_add(len);
            if len < 34 {
                continue;
            }
            let Some(run) = text.get(start..i) else {
                continue;
            };
            let run = run.trim_end_matches('.');
            let end = start.saturating_add(run.len());
            if self.discord.is_match(run) {
                push(
                    found,
                    SecretMatch {
                        rule: "secret.discord_token",
                        kind: "discord_token",
                        start,
                        end,
                    },
                );
            } else if self.twilio.is_match(run) {
                push(
                    found,
                    SecretMatch {
                        rule: "secret.twilio_key",
                        kind: "twilio_key",
                        start,
                        end,
                    },
                );
            }
        }
    }
}

fn push(found: &mut Vec<SecretMatch>, m: SecretMatch) {
    if m.end <= m.start {
        return;
    }
    if let Some(other) = found
        .iter_mut()
        .find(|o| o.start < m.end && m.start < o.end)
    {
        // Both spans are non-empty (only such are pushed): the lengths do not saturate.
        if m.end.saturating_sub(m.start) > other.end.saturating_sub(other.start) {
            *other = m;
        }
        return;
    }
    found.push(m);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<&'static str> {
        Scanner::new()
            .unwrap()
            .scan(text)
            .iter()
            .map(|m| m.kind)
            .collect()
    }

    #[test]
    fn providers() {
        let cases = [
            ("key AKIAIOSFODNN7EXAMPLE here", "aws_access_key"),
            (
                "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                "aws_secret_key",
            ),
            (
                "https://admin:s3cr3tP4ss@db.internal.example/x",
                "url_credentials",
            ),
            (
                "token ghp_abcdefghijklmnopqrstuvwxyz0123456789",
                "github_token",
            ),
            ("glpat-abcdefghij0123456789", "gitlab_token"),
            (
                "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
                "jwt",
            ),
            ("xoxb-123456789012-abcdefghijkl", "slack_token"),
            ("sk_live_abcdefghijklmnopqrstuvwx", "stripe_key"),
            (
                "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----",
                "private_key",
            ),
            ("AIzaSyA1234567890abcdefghijklmnopqrstuv", "google_api_key"),
            (
                "SG.abcdefghijklmnopqrstuv.abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
                "sendgrid_key",
            ),
            (
                "bot 123456789:AAabcdefghijklmnopqrstuvwxyz0123456",
                "telegram_token",
            ),
            ("SK0123456789abcdef0123456789abcdef", "twilio_key"),
            (
                "MTIzNDU2Nzg5MDEyMzQ1Njc4.GaBcDe.abcdefghijklmnopqrstuvwxyz0",
                "discord_token",
            ),
            ("npm_abcdefghijklmnopqrstuvwxyz0123456789", "npm_token"),
            (
                "sk-proj-abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOP0123",
                "openai_key",
            ),
            ("hf_abcdefghijklmnopqrstuvwxyzABCDEFGH", "huggingface_token"),
            // The two-byte anchor is searched apart from the others, after an "API" that is not one.
            ("API key: AP6xYz0123456789abcd", "artifactory_token"),
            ("AKCp8jQ0123456789abcdef", "artifactory_token"),
            ("0123456789abcdef0123456789abcdef-us12", "mailchimp_key"),
            ("password = \"Tr0ub4dor&3x!\"", "secret"),
            ("\"api_key\": \"a8Fk29dLqP0zXv7Rt3Yw\"", "secret"),
        ];
        for (text, kind) in cases {
            assert!(kinds(text).contains(&kind), "{text:?}: {:?}", kinds(text));
        }
    }

    #[test]
    fn placeholders_and_prose_are_not_secrets() {
        for text in [
            "password: required",
            "Set the api_key parameter to your key.",
            "token = ${GITHUB_TOKEN}",
            "password=<your-password>",
            "The token must be a string.",
            "secret: hidden",
            "https://example.com/path?x=1",
            "client_secret: process.env.CLIENT_SECRET",
        ] {
            assert!(kinds(text).is_empty(), "{text:?}: {:?}", kinds(text));
        }
    }

    #[test]
    fn entropy_is_sane() {
        assert!(entropy("aaaaaaaa") < 0.01);
        assert!(entropy("a8Fk29dLqP0zXv7Rt3Yw") > 4.0);
    }
}
