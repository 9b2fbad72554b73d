//! A small SMTP client (RFC 5321) with STARTTLS (RFC 3207) and AUTH PLAIN: enough to hand
//! one message to a relay. Credentials are only ever sent over TLS.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::{self, RootCertStore};

/// How to reach the relay.
#[derive(Clone)]
pub struct SmtpSettings {
    /// Host name (also the TLS server name).
    pub host: String,
    /// Port (587 for submission with STARTTLS).
    pub port: u16,
    /// `starttls` (required; the default), or `none` (plain, for a relay on loopback).
    pub tls: String,
    /// User for AUTH PLAIN, if any.
    pub username: Option<String>,
    /// Password.
    pub password: Option<String>,
    /// Envelope and header sender.
    pub from: String,
    /// Extra CA certificates (PEM) to trust besides the public roots.
    pub ca_pem: Option<String>,
}

/// `Debug` without the password (settings end up in logs and panics).
impl std::fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("from", &self.from)
            .field("ca_pem", &self.ca_pem.as_ref().map(|_| "<PEM>"))
            .finish()
    }
}

/// Why sending failed: `permanent` for 5xx answers (retrying cannot help).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SmtpError {
    /// What happened.
    pub message: String,
    /// The server refused for good (5xx).
    pub permanent: bool,
}

fn fail(message: impl Into<String>) -> SmtpError {
    SmtpError {
        message: message.into(),
        permanent: false,
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

struct Session {
    stream: BufReader<Box<dyn Io>>,
}

impl Session {
    async fn reply(&mut self) -> Result<(u16, Vec<String>), SmtpError> {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            let n = self
                .stream
                .read_line(&mut line)
                .await
                .map_err(|e| fail(format!("SMTP read: {e}")))?;
            if n == 0 {
                return Err(fail("SMTP server closed the connection"));
            }
            let line = line.trim_end().to_string();
            if line.len() < 3 {
                return Err(fail(format!("SMTP answer not understood: {line:?}")));
            }
            let code: u16 = line[..3]
                .parse()
                .map_err(|_| fail(format!("SMTP answer not understood: {line:?}")))?;
            let more = line.as_bytes().get(3) == Some(&b'-');
            lines.push(line.get(4..).unwrap_or_default().to_string());
            if !more {
                return Ok((code, lines));
            }
        }
    }

    async fn command(&mut self, line: &str, expect: u16) -> Result<Vec<String>, SmtpError> {
        let stream = self.stream.get_mut();
        stream
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .map_err(|e| fail(format!("SMTP write: {e}")))?;
        stream
            .flush()
            .await
            .map_err(|e| fail(format!("SMTP write: {e}")))?;
        self.expect(expect, line.split(' ').next().unwrap_or(line))
            .await
    }

    async fn expect(&mut self, expect: u16, what: &str) -> Result<Vec<String>, SmtpError> {
        let (code, lines) = self.reply().await?;
        if code / 100 != expect / 100 {
            return Err(SmtpError {
                message: format!("SMTP {what}: {code} {}", lines.join(" ")),
                permanent: code >= 500,
            });
        }
        Ok(lines)
    }
}

fn tls_config(ca_pem: Option<&str>) -> Result<rustls::ClientConfig, SmtpError> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(pem) = ca_pem {
        use rustls_pki_types::pem::PemObject;
        for cert in rustls_pki_types::CertificateDer::pem_slice_iter(pem.as_bytes()) {
            let cert = cert.map_err(|e| fail(format!("caCert: {e}")))?;
            roots.add(cert).map_err(|e| fail(format!("caCert: {e}")))?;
        }
    }
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| fail(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth())
}

/// Dot-stuff and CRLF-normalise a message body (RFC 5321 §4.5.2).
pub fn dot_stuff(body: &str) -> String {
    let mut out = String::with_capacity(body.len() + 16);
    for line in body.replace("\r\n", "\n").split('\n') {
        if line.starts_with('.') {
            out.push('.');
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out
}

/// Keep header values on one line.
fn header_value(value: &str) -> String {
    value.replace(['\r', '\n'], " ")
}

/// Send one message. `message_id` makes a resent message recognisable as the same.
pub async fn send(
    settings: &SmtpSettings,
    to: &str,
    subject: &str,
    body: &str,
    message_id: &str,
) -> Result<(), SmtpError> {
    let tcp = tokio::time::timeout(
        Duration::from_secs(10),
        TcpStream::connect((settings.host.as_str(), settings.port)),
    )
    .await
    .map_err(|_| {
        fail(format!(
            "connecting to {}:{} timed out",
            settings.host, settings.port
        ))
    })?
    .map_err(|e| {
        fail(format!(
            "connecting to {}:{}: {e}",
            settings.host, settings.port
        ))
    })?;
    let mut session = Session {
        stream: BufReader::new(Box::new(tcp)),
    };
    session.expect(220, "greeting").await?;
    let extensions = session.command("EHLO stellaops-notify", 250).await?;
    let offers_tls = extensions
        .iter()
        .any(|e| e.eq_ignore_ascii_case("STARTTLS"));
    let mut secure = false;
    if settings.tls != "none" {
        if !offers_tls {
            return Err(SmtpError {
                message: format!(
                    "{} does not offer STARTTLS; set tls: none in the Secret only for a relay on a trusted network",
                    settings.host
                ),
                permanent: true,
            });
        }
        session.command("STARTTLS", 220).await?;
        let config = tls_config(settings.ca_pem.as_deref())?;
        let name = rustls_pki_types::ServerName::try_from(settings.host.clone())
            .map_err(|e| fail(format!("TLS server name {}: {e}", settings.host)))?;
        let inner = session.stream.into_inner();
        let tls = TlsConnector::from(Arc::new(config))
            .connect(name, inner)
            .await
            .map_err(|e| fail(format!("STARTTLS with {}: {e}", settings.host)))?;
        session = Session {
            stream: BufReader::new(Box::new(tls)),
        };
        session.command("EHLO stellaops-notify", 250).await?;
        secure = true;
    }
    if let (Some(user), Some(password)) = (&settings.username, &settings.password) {
        if !secure {
            return Err(SmtpError {
                message: "refusing to send SMTP credentials without TLS".into(),
                permanent: true,
            });
        }
        let token = STANDARD.encode(format!("\0{user}\0{password}"));
        session.command(&format!("AUTH PLAIN {token}"), 235).await?;
    }
    session
        .command(&format!("MAIL FROM:<{}>", settings.from), 250)
        .await?;
    session.command(&format!("RCPT TO:<{to}>"), 250).await?;
    session.command("DATA", 354).await?;
    let date = chrono::Utc::now().to_rfc2822();
    let message = format!(
        "From: {}\r\nTo: {}\r\nSubject: {}\r\nDate: {date}\r\nMessage-ID: <{}@stellaops>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{}.\r\n",
        header_value(&settings.from),
        header_value(to),
        header_value(subject),
        header_value(message_id),
        dot_stuff(body)
    );
    let stream = session.stream.get_mut();
    stream
        .write_all(message.as_bytes())
        .await
        .map_err(|e| fail(format!("SMTP write: {e}")))?;
    stream
        .flush()
        .await
        .map_err(|e| fail(format!("SMTP write: {e}")))?;
    session.expect(250, "DATA").await?;
    let _ = session.command("QUIT", 221).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dots_and_line_ends() {
        assert_eq!(dot_stuff("a\n.b\nc"), "a\r\n..b\r\nc\r\n");
        assert_eq!(dot_stuff("x\r\ny"), "x\r\ny\r\n");
        assert_eq!(header_value("a\r\nBcc: x"), "a  Bcc: x");
    }
}
