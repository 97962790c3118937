//! The URL's `sslmode` (libpq's names), made into what tokio-postgres and rustls take.
//!
//! tokio-postgres knows only `disable`, `prefer` and `require`, and rejects a URL that
//! names anything else with a bare "invalid connection string". deployhook takes libpq's
//! set out of the URL first and honours it the way libpq does: `prefer` and `require`
//! encrypt without checking whose certificate it is (libpq's documented behaviour, and what
//! managed databases with private CAs are used with), `verify-ca` checks the chain but not
//! the name, `verify-full` checks both. Roots: `sslrootcert=FILE` (PEM) when given, else
//! the system's store and Mozilla's.

use std::sync::Arc;

use anyhow::Context;
use rustls::DigitallySignedStruct;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

/// libpq's `sslmode` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// A URL with libpq's TLS parameters taken out, and what they said.
#[derive(Debug)]
pub struct Parsed {
    /// The URL tokio-postgres parses (`sslmode` only as `disable`, `prefer` or `require`).
    pub url: String,
    pub mode: SslMode,
    pub root_cert: Option<String>,
}

/// Takes `sslmode` and `sslrootcert` out of `url`'s query. `sslcert`/`sslkey` (client
/// certificates) are refused by name rather than ignored.
pub fn parse(url: &str) -> anyhow::Result<Parsed> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut mode = SslMode::Prefer;
    let mut root_cert = None;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "sslmode" => {
                mode = match value {
                    "disable" => SslMode::Disable,
                    "allow" | "prefer" => SslMode::Prefer,
                    "require" => SslMode::Require,
                    "verify-ca" => SslMode::VerifyCa,
                    "verify-full" => SslMode::VerifyFull,
                    other => anyhow::bail!(
                        "sslmode={other} in DEPLOYHOOK_DATABASE is not one of disable, prefer, \
                         require, verify-ca, verify-full"
                    ),
                }
            }
            "sslrootcert" => root_cert = Some(percent_decode(value)),
            "sslcert" | "sslkey" | "sslpassword" => anyhow::bail!(
                "{key} in DEPLOYHOOK_DATABASE: client certificates are not supported; give a \
                 password in the URL instead (postgres://user:password@host/db)"
            ),
            _ => kept.push(pair),
        }
    }
    let tokio_mode = match mode {
        SslMode::Disable => "disable",
        SslMode::Prefer => "prefer",
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => "require",
    };
    kept.push(match tokio_mode {
        "disable" => "sslmode=disable",
        "prefer" => "sslmode=prefer",
        _ => "sslmode=require",
    });
    Ok(Parsed {
        url: format!("{base}?{}", kept.join("&")),
        mode,
        root_cert,
    })
}

/// `%2F` and friends in a path given in the URL.
fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(byte) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
        {
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The rustls configuration `mode` asks for.
pub fn client_config(parsed: &Parsed) -> anyhow::Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS setup")?;
    let roots = Arc::new(roots(parsed.root_cert.as_deref())?);
    let verifier = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
        .build()
        .context("TLS setup")?;
    let config = match parsed.mode {
        SslMode::VerifyFull => builder.with_webpki_verifier(verifier).with_no_client_auth(),
        SslMode::VerifyCa => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ChainOnly(verifier)))
            .with_no_client_auth(),
        SslMode::Disable | SslMode::Prefer | SslMode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(EncryptOnly(provider)))
            .with_no_client_auth(),
    };
    Ok(config)
}

fn roots(file: Option<&str>) -> anyhow::Result<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    if let Some(file) = file {
        for cert in CertificateDer::pem_file_iter(file)
            .with_context(|| format!("could not read sslrootcert {file}"))?
        {
            let cert = cert.with_context(|| format!("could not read sslrootcert {file}"))?;
            roots.add(cert).with_context(|| {
                format!("sslrootcert {file} holds a certificate rustls refuses")
            })?;
        }
        anyhow::ensure!(!roots.is_empty(), "sslrootcert {file} holds no certificate");
    } else {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    }
    Ok(roots)
}

/// `verify-ca`: the chain must lead to a trusted root; the name is not checked.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `prefer` and `require`: encrypted, whoever's certificate it is (libpq's meaning), but
/// the handshake's signatures are still checked against that certificate.
#[derive(Debug)]
struct EncryptOnly(Arc<CryptoProvider>);

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::{SslMode, parse};

    #[test]
    fn libpq_ssl_parameters_are_taken_out_of_the_url() {
        let parsed =
            parse("postgres://u:p@db:5432/deployhook?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&application_name=x")
                .unwrap();
        assert_eq!(parsed.mode, SslMode::VerifyFull);
        assert_eq!(parsed.root_cert.as_deref(), Some("/etc/ca.pem"));
        assert_eq!(
            parsed.url,
            "postgres://u:p@db:5432/deployhook?application_name=x&sslmode=require"
        );
        let plain = parse("postgres://db/deployhook").unwrap();
        assert_eq!(plain.mode, SslMode::Prefer);
        assert_eq!(plain.url, "postgres://db/deployhook?sslmode=prefer");
        assert!(parse("postgres://db/x?sslmode=bogus").is_err());
        let err = parse("postgres://db/x?sslcert=/c.pem")
            .unwrap_err()
            .to_string();
        assert!(err.contains("client certificates"), "{err}");
    }
}
