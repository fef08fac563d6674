//! `quiverctl cert`: a CA and certificates signed by it, for a test or a small deployment
//! (rcgen). The CA's key signs node and client certificates later: its name is fixed, so the
//! CA is rebuilt from its key alone. A node's certificate is a member certificate: it names
//! `MEMBER_CERT_NAME`, which a client's never does, so no client certificate can act as a
//! member however it was signed. Every certificate has a finite lifetime (`*_DAYS`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use quiver_core::access::MEMBER_CERT_NAME;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

const CA_NAME: &str = "Quiver cluster CA";
/// How long each kind of certificate is valid from its making: a CA outlives the
/// certificates it signs; a node's is renewed yearly, a client's quarterly.
const CA_DAYS: i64 = 10 * 365;
const NODE_DAYS: i64 = 365;
const CLIENT_DAYS: i64 = 90;

/// Valid from an hour ago (clocks a little behind) for `days`.
fn valid_for(params: &mut CertificateParams, days: i64) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(days);
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, CA_NAME);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params
}

/// Writes `text` to a new file (never over one), readable by this user only when `private`.
pub(crate) fn write(path: &Path, text: &str, private: bool) -> Result<()> {
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
    let mut params = ca_params();
    valid_for(&mut params, CA_DAYS);
    let cert = params.self_signed(&key)?;
    write(&out.join("ca.pem"), &cert.pem(), false)?;
    write(&out.join("ca.key"), &key.serialize_pem(), true)?;
    println!("wrote {} and {}", out.join("ca.pem").display(), out.join("ca.key").display());
    Ok(())
}

/// Writes `NAME.pem` and `NAME.key` into `out`: a member certificate for `hosts` (names and
/// IP addresses), signed by the CA in `ca_dir`, good for serving and for connecting (nodes
/// present it to each other).
pub fn create_node(name: &str, ca_dir: &Path, out: &Path, hosts: &[String]) -> Result<()> {
    let mut hosts = hosts.to_vec();
    if hosts.is_empty() {
        hosts = vec!["127.0.0.1".into(), "localhost".into(), name.into()];
    }
    let mut names = hosts.clone();
    names.push(MEMBER_CERT_NAME.into());
    let mut params = CertificateParams::new(names)?;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    valid_for(&mut params, NODE_DAYS);
    issue(name, params, ca_dir, out, &format!("member certificate for {}", hosts.join(", ")))
}

/// Writes `NAME.pem` and `NAME.key` into `out`: a client certificate for `NAME`, signed by
/// the CA in `ca_dir`, for connecting only and never a member's.
pub fn create_client(name: &str, ca_dir: &Path, out: &Path) -> Result<()> {
    if name.eq_ignore_ascii_case(MEMBER_CERT_NAME) {
        bail!("{name} is the name that marks member certificates; give the client another");
    }
    let mut params = CertificateParams::default();
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    valid_for(&mut params, CLIENT_DAYS);
    issue(name, params, ca_dir, out, &format!("client certificate, valid {CLIENT_DAYS} days"))
}

/// Signs `params` for `name` with the CA in `ca_dir` and writes the pair into `out`.
fn issue(name: &str, mut params: CertificateParams, ca_dir: &Path, out: &Path, what: &str) -> Result<()> {
    let ca_key_path = ca_dir.join("ca.key");
    let ca_key = std::fs::read_to_string(&ca_key_path).with_context(|| format!("reading {}", ca_key_path.display()))?;
    let issuer = Issuer::new(ca_params(), KeyPair::from_pem(&ca_key).context("the CA key")?);
    params.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let (pem, key_path): (PathBuf, PathBuf) = (out.join(format!("{name}.pem")), out.join(format!("{name}.key")));
    write(&pem, &cert.pem(), false)?;
    write(&key_path, &key.serialize_pem(), true)?;
    println!("wrote {} and {}: {what}", pem.display(), key_path.display());
    Ok(())
}
