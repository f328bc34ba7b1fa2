//! The HTTP source: `GET` the agent's `/state` with reqwest.
//!
//! Invariants:
//! - Every request is bounded in time (the client's total timeout covers connect, headers
//!   and body) and in size: a `Content-Length` over the limit is refused before reading, and
//!   the body is read chunk by chunk and refused as soon as it passes the limit, so at most
//!   `limit` bytes (plus one chunk) are ever held.
//! - Only status 200 is a state; anything else is a `status` failure.
//! - The auth token is sent as `Authorization: token=<t>`, marked sensitive (never logged,
//!   dropped by reqwest on redirects to another host).
//! - With a CA file, only its certificates are trusted for `https` (not the built-in roots).
//! - System proxy variables are ignored: this talks to the local agent.
//! - The client is built lazily and dropped after any failure, so the next poll starts
//!   from fresh connections and re-reads the CA file (a rotated CA is picked up; a missing
//!   one is an `io` failure like any other, retried with backoff).

use super::outcome::{chain, PollError, Reason};
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use reqwest::{Certificate, Client, ClientBuilder, StatusCode};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub(crate) struct HttpSource {
    url: String,
    auth_token: Option<String>,
    ca_file: Option<PathBuf>,
    timeout: Duration,
    limit: usize,
    client: Option<Client>,
}

impl HttpSource {
    pub(crate) fn new(
        url: String,
        auth_token: Option<String>,
        ca_file: Option<PathBuf>,
        timeout: Duration,
        limit: usize,
    ) -> HttpSource {
        HttpSource {
            url,
            auth_token,
            ca_file,
            timeout,
            limit,
            client: None,
        }
    }

    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    fn build(&self) -> Result<Client, PollError> {
        client_builder(self.auth_token.as_deref(), self.ca_file.as_deref())?
            .timeout(self.timeout)
            .connect_timeout(self.timeout)
            .build()
            .map_err(|e| classify(&e))
    }

    /// One `GET`: the body of a 200 answer, at most the limit.
    pub(crate) async fn fetch(&mut self) -> Result<Vec<u8>, PollError> {
        let result = self.fetch_once().await;
        if result.is_err() {
            self.client = None;
        }
        result
    }

    async fn fetch_once(&mut self) -> Result<Vec<u8>, PollError> {
        let client = match &self.client {
            Some(client) => client.clone(),
            None => {
                let client = self.build()?;
                self.client = Some(client.clone());
                client
            }
        };
        let mut response = client
            .get(&self.url)
            .send()
            .await
            .map_err(|e| classify(&e))?;
        let status = response.status();
        if status != StatusCode::OK {
            return Err(PollError::new(
                Reason::Status,
                format!("{} answered {status}", self.url),
            ));
        }
        read_limited(&mut response, self.limit).await
    }
}

/// A client builder with what every request to Mesos carries, whatever its timeouts: no
/// system proxy, the token as a sensitive `Authorization: token=<t>` header, and with a CA
/// file only its certificates as roots (the file is read now).
pub(crate) fn client_builder(
    auth_token: Option<&str>,
    ca_file: Option<&Path>,
) -> Result<ClientBuilder, PollError> {
    let mut builder = Client::builder().no_proxy();
    if let Some(token) = auth_token {
        let mut value = HeaderValue::from_str(&format!("token={token}")).map_err(|_| {
            PollError::new(
                Reason::Http,
                "the auth token is not a valid HTTP header value",
            )
        })?;
        value.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, value);
        builder = builder.default_headers(headers);
    }
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).map_err(|e| {
            PollError::new(
                Reason::Io,
                format!("cannot read CA file {}: {e}", path.display()),
            )
        })?;
        let certs = Certificate::from_pem_bundle(&pem).map_err(|e| {
            PollError::new(
                Reason::Http,
                format!("bad CA file {}: {}", path.display(), chain(&e)),
            )
        })?;
        if certs.is_empty() {
            return Err(PollError::new(
                Reason::Http,
                format!("CA file {} holds no certificate", path.display()),
            ));
        }
        builder = builder.tls_built_in_root_certs(false);
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    Ok(builder)
}

fn too_large(limit: usize) -> PollError {
    PollError::new(
        Reason::TooLarge,
        format!("the state is larger than the limit of {limit} bytes"),
    )
}

/// The body, refused as soon as it is known to exceed `limit`.
async fn read_limited(
    response: &mut reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, PollError> {
    let announced = response.content_length();
    if announced.is_some_and(|len| len > limit as u64) {
        return Err(too_large(limit));
    }
    // Trust the announced length for the first allocation only up to 1 MiB.
    let first = announced.map_or(0, |len| len.min(1 << 20) as usize);
    let mut body = Vec::with_capacity(first);
    while let Some(chunk) = response.chunk().await.map_err(|e| classify(&e))? {
        if body.len() + chunk.len() > limit {
            return Err(too_large(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A reqwest error's reason: `timeout` when the time ran out, `http` otherwise.
pub(crate) fn classify(error: &reqwest::Error) -> PollError {
    let reason = if error.is_timeout() {
        Reason::Timeout
    } else {
        Reason::Http
    };
    PollError::new(reason, chain(error))
}
