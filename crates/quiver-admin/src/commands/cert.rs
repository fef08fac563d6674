//! `quiverctl cert`: a CA and certificates signed by it, for a test or a small deployment
//! (rcgen). The CA's key signs node certificates later: its name is fixed, so the CA is
//! rebuilt from its key alone.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

const CA_NAME: &str = "Quiver cluster CA";

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, CA_NAME);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params
}

fn write(path: &Path, text: &str, private: bool) -> Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).with_context(|| format!("writing {} (it must not exist yet)", path.display()))?;
    file.write_all(text.as_bytes()).with_context(|| format!("writing {}", path.display()))
}

/// Writes `ca.pem` and `ca.key` (mode 0600) into `out`.
pub fn create_ca(out: &Path) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let key = KeyPair::generate()?;
    let cert = ca_params().self_signed(&key)?;
    write(&out.join("ca.pem"), &cert.pem(), false)?;
    write(&out.join("ca.key"), &key.serialize_pem(), true)?;
    println!("wrote {} and {}", out.join("ca.pem").display(), out.join("ca.key").display());
    Ok(())
}

/// Writes `NAME.pem` and `NAME.key` into `out`: a certificate for `hosts` (names and IP
/// addresses), signed by the CA in `ca_dir`, good for serving and for connecting (nodes
/// present it to each other).
pub fn create_node(name: &str, ca_dir: &Path, out: &Path, hosts: &[String]) -> Result<()> {
    let ca_key_path = ca_dir.join("ca.key");
    let ca_key = std::fs::read_to_string(&ca_key_path).with_context(|| format!("reading {}", ca_key_path.display()))?;
    let issuer = Issuer::new(ca_params(), KeyPair::from_pem(&ca_key).context("the CA key")?);
    let mut hosts = hosts.to_vec();
    if hosts.is_empty() {
        hosts = vec!["127.0.0.1".into(), "localhost".into(), name.into()];
    }
    let mut params = CertificateParams::new(hosts.clone())?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let (pem, key_path): (PathBuf, PathBuf) = (out.join(format!("{name}.pem")), out.join(format!("{name}.key")));
    write(&pem, &cert.pem(), false)?;
    write(&key_path, &key.serialize_pem(), true)?;
    println!("wrote {} and {} for {}", pem.display(), key_path.display(), hosts.join(", "));
    Ok(())
}
