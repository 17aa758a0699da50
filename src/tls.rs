//! TLS material hab makes itself: a certificate authority of its own per
//! use (a fleet's RPC, say) and the certificates it signs, as PEM. ECDSA
//! P-256 keys, which Go (btcd, dockerd), OpenSSL and rustls all take.
//!
//! The CA's private key is never written anywhere: what hab keeps is the
//! CA certificate (to pin) and each leaf's certificate and key. New leaves
//! mean a new CA; nothing is ever signed later by an old one.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

/// Why material could not be made.
#[derive(Debug, thiserror::Error)]
#[error("cannot make TLS material: {0}")]
pub struct TlsError(#[from] rcgen::Error);

/// A certificate and its private key, as PEM.
#[derive(Debug, Clone)]
pub struct Leaf {
    /// The certificate.
    pub cert_pem: String,
    /// Its private key (PKCS#8).
    pub key_pem: String,
}

/// A certificate authority, alive only as long as this value.
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    /// Its certificate, to pin.
    pub cert_pem: String,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority").finish_non_exhaustive()
    }
}

fn named(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "hab");
    dn.push(DnType::CommonName, common_name);
    dn
}

impl Authority {
    /// A new CA named `common_name`, valid from a day ago (clocks differ)
    /// for ten years.
    ///
    /// # Errors
    /// Key generation or signing failed.
    pub fn new(common_name: &str) -> Result<Self, TlsError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = named(common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        validity(&mut params);
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok(Authority {
            issuer: Issuer::new(params, key),
            cert_pem: cert.pem(),
        })
    }

    /// A server certificate for `names` (DNS names, wildcards like
    /// `*.svc.ns.svc`, or IP addresses).
    ///
    /// # Errors
    /// A name is not a DNS name or address, or signing failed.
    pub fn server(&self, names: &[String]) -> Result<Leaf, TlsError> {
        let first = names.first().map_or("server", String::as_str);
        self.leaf(first, names, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate named `common_name`.
    ///
    /// # Errors
    /// Signing failed.
    pub fn client(&self, common_name: &str) -> Result<Leaf, TlsError> {
        self.leaf(common_name, &[], ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn leaf(
        &self,
        common_name: &str,
        names: &[String],
        usage: ExtendedKeyUsagePurpose,
    ) -> Result<Leaf, TlsError> {
        let mut params = CertificateParams::new(names.to_vec())?;
        params.distinguished_name = named(common_name);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        validity(&mut params);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

fn validity(params: &mut CertificateParams) {
    use chrono::Datelike;
    let now = chrono::Utc::now() - chrono::Duration::days(1);
    let (y, m, d) = (now.year(), now.month() as u8, now.day() as u8);
    params.not_before = rcgen::date_time_ymd(y, m, d);
    params.not_after = rcgen::date_time_ymd(y + 10, m, d.min(28));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_certificate_verifies_against_its_ca_only() {
        let ca = Authority::new("hab test CA").unwrap();
        let leaf = ca
            .server(&["127.0.0.1".into(), "*.node.ns.svc".into()])
            .unwrap();
        assert!(leaf.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(leaf.key_pem.contains("PRIVATE KEY"));
        // Checked by OpenSSL (what reqwest's native-tls uses), not by us.
        let dir = tempfile::tempdir().unwrap();
        let (ca_path, leaf_path) = (dir.path().join("ca.pem"), dir.path().join("leaf.pem"));
        std::fs::write(&ca_path, &ca.cert_pem).unwrap();
        std::fs::write(&leaf_path, &leaf.cert_pem).unwrap();
        let verify = |ca: &std::path::Path, extra: &[&str]| {
            std::process::Command::new("openssl")
                .arg("verify")
                .args(extra)
                .arg("-CAfile")
                .arg(ca)
                .arg(&leaf_path)
                .output()
                .unwrap()
        };
        let ok = verify(
            &ca_path,
            &["-purpose", "sslserver", "-verify_ip", "127.0.0.1"],
        );
        assert!(ok.status.success(), "{ok:?}");
        let ok = verify(&ca_path, &["-verify_hostname", "n-0.node.ns.svc"]);
        assert!(ok.status.success(), "{ok:?}");
        let bad = verify(&ca_path, &["-verify_hostname", "n-0.other.ns.svc"]);
        assert!(!bad.status.success());
        let other = Authority::new("another CA").unwrap();
        std::fs::write(&ca_path, &other.cert_pem).unwrap();
        assert!(!verify(&ca_path, &[]).status.success());
    }
}
