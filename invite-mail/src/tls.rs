//! The one TLS client configuration of this crate: rustls with the ring provider and
//! the webpki root certificates (no native-tls, no system OpenSSL).

use std::sync::Arc;

/// A rustls client configuration trusting the webpki roots, and `extra` roots (a
/// private relay's own CA).
pub(crate) fn client_config(
    extra: &[rustls::pki_types::CertificateDer<'static>],
) -> Result<rustls::ClientConfig, rustls::Error> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for root in extra {
        roots.add(root.clone())?;
    }
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth())
}
