//! Webhooks: who sent one, whether its signature holds, which pipeline it is
//! about, and what it asks for. Plain functions; the HTTP side is in
//! `server::hooks`.
//!
//! A webhook is the part of hab that faces the internet, so it can only ever
//! ask for a sync of the pipeline whose secret signed it and whose upstream
//! the payload names. Nothing else in a payload is read: no ref, commit or
//! tag from it is trusted. The mirror fetches upstream itself and the
//! signature policy decides what is built.

use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;

/// Who sends a webhook, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// GitHub (and GitHub Enterprise).
    Github,
    /// Gitea and Forgejo.
    Gitea,
    /// Anything that can sign its body: `X-Hab-Signature-256: sha256=<hex>`,
    /// `X-Hab-Delivery: <unique id>`, on `/hooks/generic/<pipeline>`.
    Generic,
}

impl Provider {
    /// The name used in records and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Github => "github",
            Provider::Gitea => "gitea",
            Provider::Generic => "generic",
        }
    }

    /// The header carrying the signature.
    pub fn signature_header(self) -> &'static str {
        match self {
            Provider::Github => "x-hub-signature-256",
            Provider::Gitea => "x-gitea-signature",
            Provider::Generic => "x-hab-signature-256",
        }
    }

    /// The header carrying the delivery id.
    pub fn delivery_header(self) -> &'static str {
        match self {
            Provider::Github => "x-github-delivery",
            Provider::Gitea => "x-gitea-delivery",
            Provider::Generic => "x-hab-delivery",
        }
    }

    /// The header carrying the event name (none for generic hooks).
    pub fn event_header(self) -> Option<&'static str> {
        match self {
            Provider::Github => Some("x-github-event"),
            Provider::Gitea => Some("x-gitea-event"),
            Provider::Generic => None,
        }
    }

    /// The MAC a signature header carries, or None when it is not one.
    /// GitHub and generic hooks write `sha256=<hex>`; Gitea the bare hex.
    pub fn parse_signature(self, header: &str) -> Option<Vec<u8>> {
        let hex_part = match self {
            Provider::Github | Provider::Generic => header.trim().strip_prefix("sha256=")?,
            Provider::Gitea => header.trim(),
        };
        let mac = hex::decode(hex_part).ok()?;
        (mac.len() == 32).then_some(mac)
    }
}

/// True when `mac` is the HMAC-SHA256 of `body` under `secret`. The
/// comparison takes the same time wherever the two differ.
pub fn signature_valid(secret: &[u8], body: &[u8], mac: &[u8]) -> bool {
    let Ok(mut m) = <Hmac<Sha256> as KeyInit>::new_from_slice(secret) else {
        return false;
    };
    m.update(body);
    m.verify_slice(mac).is_ok()
}

/// The HMAC-SHA256 of `body` under `secret`, hex (for senders and tests).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC takes any key");
    m.update(body);
    hex::encode(m.finalize().into_bytes())
}

/// What an event asks of hab.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookAction {
    /// Something changed upstream: sync the pipeline.
    Sync,
    /// The sender checks the hook works.
    Ping,
    /// Nothing hab acts on (issues, stars...).
    Ignore,
}

/// What `event` asks for. `push`, `create` (a tag or branch) and `release`
/// may mean a new release; a generic hook always asks for a sync.
pub fn action(provider: Provider, event: Option<&str>) -> HookAction {
    match (provider, event) {
        (Provider::Generic, _) => HookAction::Sync,
        (_, Some("push" | "create" | "release")) => HookAction::Sync,
        (_, Some("ping")) => HookAction::Ping,
        _ => HookAction::Ignore,
    }
}

/// Every URL by which a GitHub or Gitea payload names its repository.
pub fn repository_urls(payload: &Value) -> Vec<String> {
    let Some(repo) = payload.get("repository") else {
        return Vec::new();
    };
    ["clone_url", "html_url", "git_url", "ssh_url", "url"]
        .iter()
        .filter_map(|k| repo.get(*k).and_then(Value::as_str))
        .map(str::to_string)
        .collect()
}

/// A repository URL reduced to `host[:port]/path`, lower-case host, without
/// scheme, user, `.git` or trailing `/`, so that `https://github.com/a/b`,
/// `git@github.com:a/b.git` and `git://github.com/a/b.git` compare equal.
pub fn normalize_url(url: &str) -> Option<String> {
    let url = url.trim();
    let rest = match url.split_once("://") {
        Some((_, rest)) => rest.to_string(),
        // scp-like: git@github.com:a/b.git
        None => {
            let (host, path) = url.split_once(':')?;
            format!("{host}/{path}")
        }
    };
    let rest = rest.rsplit_once('@').map_or(rest.as_str(), |(_, r)| r);
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let path = path.trim_end_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    if host.is_empty() || path.is_empty() {
        return None;
    }
    Some(format!("{}/{}", host.to_ascii_lowercase(), path))
}

/// True when the payload names `upstream` as its repository.
pub fn names_upstream(payload: &Value, upstream: &str) -> bool {
    let Some(want) = normalize_url(upstream) else {
        return false;
    };
    repository_urls(payload)
        .iter()
        .filter_map(|u| normalize_url(u))
        .any(|u| u == want)
}

/// The repository a payload names, for error messages.
pub fn repository_name(payload: &Value) -> String {
    payload
        .get("repository")
        .and_then(|r| r.get("full_name").or_else(|| r.get("clone_url")))
        .and_then(Value::as_str)
        .unwrap_or("(none)")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn githubs_published_example_verifies() {
        // https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries
        let secret = b"It's a Secret to Everybody";
        let header = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        let mac = Provider::Github.parse_signature(header).unwrap();
        assert!(signature_valid(secret, b"Hello, World!", &mac));
        assert!(!signature_valid(secret, b"Hello, World?", &mac));
        assert!(!signature_valid(b"another secret", b"Hello, World!", &mac));
        assert_eq!(format!("sha256={}", sign(secret, b"Hello, World!")), header);
    }

    #[test]
    fn signatures_are_read_per_provider() {
        let hex = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert!(Provider::Gitea.parse_signature(hex).is_some());
        assert!(
            Provider::Github.parse_signature(hex).is_none(),
            "no sha256= prefix"
        );
        assert!(Provider::Github
            .parse_signature(&format!("sha1={hex}"))
            .is_none());
        assert!(Provider::Github.parse_signature("sha256=zz").is_none());
        assert!(
            Provider::Gitea.parse_signature("abcd").is_none(),
            "too short"
        );
    }

    #[test]
    fn repositories_compare_by_host_and_path() {
        let want = "https://github.com/bitcoin/bitcoin.git";
        for url in [
            "https://github.com/bitcoin/bitcoin",
            "https://GitHub.com/bitcoin/bitcoin.git/",
            "git@github.com:bitcoin/bitcoin.git",
            "git://github.com/bitcoin/bitcoin.git",
            "ssh://git@github.com/bitcoin/bitcoin",
        ] {
            assert_eq!(normalize_url(url), normalize_url(want), "{url}");
        }
        assert_ne!(
            normalize_url("https://github.com/bitcoin/bitcoin-fork"),
            normalize_url(want)
        );
        assert_ne!(
            normalize_url("git://127.0.0.1:9419/fixture.git"),
            normalize_url("git://127.0.0.1:9418/fixture.git")
        );
        let payload = serde_json::json!({"repository": {"full_name": "bitcoin/bitcoin",
            "clone_url": "https://github.com/bitcoin/bitcoin.git"}});
        assert!(names_upstream(&payload, want));
        assert!(!names_upstream(&serde_json::json!({}), want));
    }

    #[test]
    fn only_pushes_tags_and_releases_ask_for_a_sync() {
        assert_eq!(action(Provider::Github, Some("push")), HookAction::Sync);
        assert_eq!(action(Provider::Github, Some("create")), HookAction::Sync);
        assert_eq!(action(Provider::Github, Some("release")), HookAction::Sync);
        assert_eq!(action(Provider::Github, Some("ping")), HookAction::Ping);
        assert_eq!(action(Provider::Gitea, Some("issues")), HookAction::Ignore);
        assert_eq!(action(Provider::Github, None), HookAction::Ignore);
        assert_eq!(action(Provider::Generic, None), HookAction::Sync);
    }
}
