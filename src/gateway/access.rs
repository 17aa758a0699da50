//! Who may call the front door, and what: users with salted-hash
//! credentials in bitcoind's `rpcauth` form, and a method allowlist each.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The methods every user may call: reads of the chain, the mempool and
/// the network, in Bitcoin Core's format whichever node answers.
pub const READ_ONLY: &[&str] = &[
    "getblockchaininfo",
    "getblockcount",
    "getbestblockhash",
    "getblockhash",
    "getblockheader",
    "getblock",
    "getrawtransaction",
    "getmempoolinfo",
    "getrawmempool",
    "estimatesmartfee",
    "getnetworkinfo",
    "uptime",
];

/// Methods the front door forwards to a user allowed them (`allow`).
pub const WRITES: &[&str] = &["sendrawtransaction"];

/// Whether the front door knows `method` at all (the documented subset):
/// anything else is "Method not found" (-32601), wallet and control calls
/// included, and never reaches a node.
pub fn known(method: &str) -> bool {
    READ_ONLY.contains(&method) || WRITES.contains(&method)
}

/// Whether `method` only reads (may be retried on another node).
pub fn reads(method: &str) -> bool {
    READ_ONLY.contains(&method)
}

/// A user of the front door.
#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    salt: String,
    hash: Vec<u8>,
    /// Methods beyond [`READ_ONLY`] this user may call (of [`WRITES`]).
    pub allow: Vec<String>,
}

/// An `rpcauth` line that is not `user:salt$hash`.
#[derive(Debug, thiserror::Error)]
#[error("not an rpcauth line (user:salt$hex-hmac-sha256): {0}")]
pub struct BadAuth(String);

impl User {
    /// From bitcoind's `rpcauth` form, `user:salt$hash`, where hash is the
    /// hex HMAC-SHA256 of the password keyed by the salt (what Bitcoin
    /// Core's share/rpcauth/rpcauth.py prints): the front door never holds
    /// a password.
    pub fn from_rpcauth(line: &str, allow: Vec<String>) -> Result<Self, BadAuth> {
        let bad = || BadAuth(line.split(':').next().unwrap_or("").to_string());
        let (name, rest) = line.split_once(':').ok_or_else(bad)?;
        let (salt, hash) = rest.split_once('$').ok_or_else(bad)?;
        let hash = hex::decode(hash).map_err(|_| bad())?;
        if name.is_empty() || salt.is_empty() || hash.len() != 32 {
            return Err(bad());
        }
        Ok(Self {
            name: name.to_string(),
            salt: salt.to_string(),
            hash,
            allow,
        })
    }

    /// The `rpcauth` line of a user with `password` and `salt`.
    pub fn rpcauth(name: &str, salt: &str, password: &str) -> String {
        format!("{name}:{salt}${}", hex::encode(mac(salt, password)))
    }

    /// Whether `password` is this user's (in constant time).
    pub fn checks(&self, password: &str) -> bool {
        let Ok(mut m) = <Hmac<Sha256> as KeyInit>::new_from_slice(self.salt.as_bytes()) else {
            return false;
        };
        m.update(password.as_bytes());
        m.verify_slice(&self.hash).is_ok()
    }

    /// Whether this user may call `method` (one the front door knows).
    pub fn may(&self, method: &str) -> bool {
        reads(method) || (WRITES.contains(&method) && self.allow.iter().any(|a| a == method))
    }
}

fn mac(salt: &str, password: &str) -> Vec<u8> {
    let mut m =
        <Hmac<Sha256> as KeyInit>::new_from_slice(salt.as_bytes()).expect("HMAC takes any key");
    m.update(password.as_bytes());
    m.finalize().into_bytes().to_vec()
}

/// The user a `Basic` Authorization header names, if its password checks.
pub fn authenticate<'a>(users: &'a [User], header: Option<&str>) -> Option<&'a User> {
    use base64::Engine as _;
    let encoded = header?.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (name, password) = text.split_once(':')?;
    users
        .iter()
        .find(|u| u.name == name)
        .filter(|u| u.checks(password))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpcauth_lines_round_trip_and_check_only_their_password() {
        let line = User::rpcauth("reader", "5a1t", "hunter2");
        let u = User::from_rpcauth(&line, vec![]).unwrap();
        assert!(u.checks("hunter2"));
        assert!(!u.checks("hunter3"));
        assert!(!u.checks(""));
        for bad in ["reader", "reader:salt", "reader:salt$zz", ":s$00", "r:$00"] {
            assert!(User::from_rpcauth(bad, vec![]).is_err(), "{bad}");
        }
    }

    #[test]
    fn reads_for_all_writes_when_allowed_nothing_else() {
        let reader = User::from_rpcauth(&User::rpcauth("r", "s", "p"), vec![]).unwrap();
        let sender = User::from_rpcauth(
            &User::rpcauth("w", "s", "p"),
            vec!["sendrawtransaction".into()],
        )
        .unwrap();
        assert!(reader.may("getblockcount") && sender.may("getblockcount"));
        assert!(!reader.may("sendrawtransaction"));
        assert!(sender.may("sendrawtransaction"));
        for never in ["stop", "dumpprivkey", "sendtoaddress", "addnode"] {
            assert!(!known(never) && !sender.may(never), "{never}");
        }
    }
}
