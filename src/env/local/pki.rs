//! Certificates for the local control plane: a CA, serving certificates, an
//! admin client certificate and the service-account signing key.

use std::path::{Path, PathBuf};

use anyhow::Result;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};

/// PEM files written into a directory.
#[derive(Debug, Clone)]
pub struct Pki {
    pub dir: PathBuf,
    pub ca_cert: PathBuf,
    pub ca_pem: String,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub admin_cert: PathBuf,
    pub admin_key: PathBuf,
    pub admin_cert_pem: String,
    pub admin_key_pem: String,
    pub sa_key: PathBuf,
    pub sa_pub: PathBuf,
}

fn write(dir: &Path, name: &str, pem: &str) -> Result<PathBuf> {
    let path = dir.join(name);
    crate::env::write_private(&path, pem.as_bytes())?;
    Ok(path)
}

pub struct Authority {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Authority {
    pub fn new(name: &str) -> Result<Authority> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        Ok(Authority {
            issuer: CertifiedIssuer::self_signed(params, KeyPair::generate()?)?,
        })
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A serving certificate for loopback names; returns (cert PEM, key PEM).
    pub fn server(&self, cn: &str, extra_dns: &[&str]) -> Result<(String, String)> {
        self.serving(cn, extra_dns, KeyPair::generate()?)
    }

    /// The same with an RSA 2048 key (PKCS#8 PEM), for servers whose TLS settings
    /// only offer RSA cipher suites (lowkey-vault: TLS 1.2, ECDHE-RSA only).
    pub fn server_rsa(&self, cn: &str, extra_dns: &[&str]) -> Result<(String, String)> {
        self.serving(
            cn,
            extra_dns,
            KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256)?,
        )
    }

    fn serving(&self, cn: &str, extra_dns: &[&str], key: KeyPair) -> Result<(String, String)> {
        let mut names = vec!["localhost".to_string()];
        names.extend(extra_dns.iter().map(|s| s.to_string()));
        let mut params = CertificateParams::new(names)?;
        params
            .subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse()?));
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// A client certificate; Kubernetes reads CN as the user and O as groups.
    pub fn client(&self, cn: &str, org: &str) -> Result<(String, String)> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, cn);
        params
            .distinguished_name
            .push(DnType::OrganizationName, org);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

impl Pki {
    pub fn create(dir: &Path) -> Result<Pki> {
        std::fs::create_dir_all(dir)?;
        let ca = Authority::new("vdrill-local-ca")?;
        let ca_pem = ca.pem();
        let (server_pem, server_key_pem) = ca.server(
            "kube-apiserver",
            &[
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ],
        )?;
        let (admin_cert_pem, admin_key_pem) = ca.client("vdrill-admin", "system:masters")?;
        // ECDSA P-256: kube-apiserver signs service-account tokens with ES256.
        let sa = KeyPair::generate()?;
        Ok(Pki {
            dir: dir.to_path_buf(),
            ca_cert: write(dir, "ca.crt", &ca_pem)?,
            server_cert: write(dir, "apiserver.crt", &server_pem)?,
            server_key: write(dir, "apiserver.key", &server_key_pem)?,
            admin_cert: write(dir, "admin.crt", &admin_cert_pem)?,
            admin_key: write(dir, "admin.key", &admin_key_pem)?,
            sa_key: write(dir, "sa.key", &sa.serialize_pem())?,
            sa_pub: write(dir, "sa.pub", &sa.public_key_pem())?,
            ca_pem,
            admin_cert_pem,
            admin_key_pem,
        })
    }
}
