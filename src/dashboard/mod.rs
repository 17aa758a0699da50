//! The web dashboard habd serves at `/`: server-rendered HTML (maud, which
//! escapes every value it is given), a stylesheet and one small script
//! embedded in the binary, nothing loaded from anywhere else.
//!
//! This module holds what is not HTTP: the sign-in sessions and their CSRF
//! tokens ([`Sessions`]), the facts the pages read as plain data
//! ([`model`]), and the pages themselves ([`pages`], [`fleets`]). The
//! server gathers the facts from the store and answers the browser.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use sha2::{Digest, Sha256};

pub mod fleets;
pub mod model;
pub mod pages;

/// The stylesheet, served at [`CSS_PATH`].
pub const CSS: &str = include_str!("assets/app.css");
/// The script (live updates, confirmation dialogs), served at [`JS_PATH`].
/// Every page works without it.
pub const JS: &str = include_str!("assets/app.js");
/// Where the stylesheet is served.
pub const CSS_PATH: &str = "/assets/app.css";
/// Where the script is served.
pub const JS_PATH: &str = "/assets/app.js";
/// The session cookie's name.
pub const COOKIE: &str = "hab_session";
/// How long a sign-in lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// The Content-Security-Policy of every page: nothing from elsewhere, no
/// inline script or style.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// A signed-in browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Who, as recorded with every action: the name given at sign-in and
    /// the token's fingerprint (`ann (token 3f2a9c1b)`).
    pub who: String,
    /// The CSRF token every form of this session carries.
    pub csrf: String,
}

/// The signed-in sessions, in memory: a restarted habd asks everyone to
/// sign in again.
#[derive(Default)]
pub struct Sessions {
    live: Mutex<HashMap<String, (Session, Instant)>>,
}

/// The first 8 hex digits of the token's SHA-256: names the token in
/// records without revealing it.
pub fn token_fingerprint(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))[..8].to_string()
}

/// Who a caller is in records: the name given, then the token's fingerprint.
pub fn who(name: &str, token: &str) -> String {
    let name: String = name
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(64)
        .collect();
    let fp = token_fingerprint(token);
    if name.is_empty() {
        format!("token {fp}")
    } else {
        format!("{name} (token {fp})")
    }
}

impl Sessions {
    /// Starts a session; returns its id (the cookie's value).
    ///
    /// # Errors
    /// The system's random source cannot be read.
    pub fn start(&self, who: String) -> std::io::Result<(String, Session)> {
        let id = crate::secrets::random_hex(32)?;
        let session = Session {
            who,
            csrf: crate::secrets::random_hex(32)?,
        };
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        live.retain(|_, (_, at)| now.duration_since(*at) < SESSION_TTL);
        live.insert(id.clone(), (session.clone(), now));
        Ok((id, session))
    }

    /// The live session of a cookie value.
    pub fn get(&self, id: &str) -> Option<Session> {
        let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        live.get(id)
            .filter(|(_, at)| at.elapsed() < SESSION_TTL)
            .map(|(s, _)| s.clone())
    }

    /// Ends a session.
    pub fn end(&self, id: &str) {
        self.live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }
}

/// Compares in time independent of where the strings differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The `Set-Cookie` value of a new session: HttpOnly, SameSite=Strict,
/// and Secure when the browser reached habd over TLS.
pub fn session_cookie(id: &str, tls: bool) -> String {
    format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        SESSION_TTL.as_secs(),
        if tls { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value that ends a session.
pub fn cleared_cookie(tls: bool) -> String {
    format!(
        "{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{}",
        if tls { "; Secure" } else { "" }
    )
}

/// The session id in a `Cookie` header.
pub fn cookie_value(header: &str) -> Option<&str> {
    header
        .split(';')
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v)
}

/// Where to go after signing in: a path of this site only (never
/// `//elsewhere` or `https://elsewhere`), else the overview.
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && !n.chars().any(char::is_control) =>
        {
            n.to_string()
        }
        _ => "/".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_found_by_its_id_until_it_ends() {
        let s = Sessions::default();
        let (id, session) = s.start(who("ann", "secret-token")).unwrap();
        assert_eq!(s.get(&id), Some(session.clone()));
        assert!(session.who.starts_with("ann (token "));
        assert!(!session.who.contains("secret"));
        assert_eq!(s.get("other"), None);
        s.end(&id);
        assert_eq!(s.get(&id), None);
    }

    #[test]
    fn the_cookie_is_http_only_strict_and_secure_over_tls() {
        let c = session_cookie("abc", true);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.contains("Secure"));
        assert!(!session_cookie("abc", false).contains("Secure"));
        assert_eq!(cookie_value("a=1; hab_session=abc; b=2"), Some("abc"));
        assert_eq!(cookie_value("a=1"), None);
    }

    #[test]
    fn sign_in_returns_only_to_this_site() {
        assert_eq!(safe_next(Some("/fleets")), "/fleets");
        assert_eq!(safe_next(Some("//evil.example")), "/");
        assert_eq!(safe_next(Some("https://evil.example")), "/");
        assert_eq!(safe_next(Some("/\\evil.example")), "/");
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "ab"));
    }
}
