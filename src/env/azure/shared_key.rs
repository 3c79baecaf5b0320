//! Shared Key authorization for Azure Storage requests.
//!
//! Hand-written because no maintained crate does it for the SDK we use:
//! `azure_storage_blob` 1.1 authenticates only with Entra ID tokens; Shared Key
//! is not supported yet (Azure/azure-sdk-for-rust#2975), and the old 0.21 crates
//! that had it are frozen. Azurite accepts only Shared Key (or SAS), and Velero's
//! Azure plugin is given the account key too, so the same key must work here.
//!
//! This follows "Authorize with Shared Key" (Azure Storage REST API, version
//! 2009-09-19 and later): the string-to-sign is the verb, eleven standard
//! headers, the canonicalized `x-ms-*` headers and the canonicalized resource;
//! the signature is HMAC-SHA256 over it with the base64-decoded account key
//! (HMAC from aws-lc-rs, the tree's crypto provider). It is a per-try policy so
//! that every retry gets a fresh `x-ms-date` and signature.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use azure_core::http::policies::{Policy, PolicyResult};
use azure_core::http::{Context, Request};
use azure_core::time::{OffsetDateTime, to_rfc7231};
use base64::Engine as _;

use crate::log::Secret;

/// Signs every request with the storage account's key.
pub(crate) struct SharedKeyPolicy {
    account: String,
    key: aws_lc_rs::hmac::Key,
}

impl std::fmt::Debug for SharedKeyPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedKeyPolicy")
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}

impl SharedKeyPolicy {
    /// `key` is the decoded account key (the bytes, not their base64).
    pub(crate) fn new(account: &str, key: &Secret) -> SharedKeyPolicy {
        SharedKeyPolicy {
            account: account.to_string(),
            key: aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key.expose()),
        }
    }

    /// The `Authorization` header value for a string-to-sign.
    fn authorization(&self, string_to_sign: &str) -> String {
        let tag = aws_lc_rs::hmac::sign(&self.key, string_to_sign.as_bytes());
        format!(
            "SharedKey {}:{}",
            self.account,
            base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
        )
    }
}

#[async_trait]
impl Policy for SharedKeyPolicy {
    async fn send(
        &self,
        ctx: &Context,
        request: &mut Request,
        next: &[Arc<dyn Policy>],
    ) -> PolicyResult {
        request.insert_header("x-ms-date", to_rfc7231(&OffsetDateTime::now_utc()));
        let sts = string_to_sign(request, &self.account);
        request.insert_header("authorization", self.authorization(&sts));
        next[0].send(ctx, request, &next[1..]).await
    }
}

/// The string-to-sign of a Blob service request (Shared Key, not Shared Key Lite).
fn string_to_sign(request: &Request, account: &str) -> String {
    let headers = request.headers();
    let header = |name: &'static str| {
        headers
            .get_optional_str(&azure_core::http::headers::HeaderName::from_static(name))
            .unwrap_or_default()
            .to_string()
    };
    // The length the transport will send: a zero length is signed as empty (since 2015-02-21).
    let length = match headers.get_optional_str(
        &azure_core::http::headers::HeaderName::from_static("content-length"),
    ) {
        Some(v) => v.to_string(),
        None => request
            .body()
            .len()
            .map(|n| n.to_string())
            .unwrap_or_default(),
    };
    let length = if length == "0" { String::new() } else { length };
    let mut s = String::new();
    s.push_str(request.method().as_str());
    s.push('\n');
    for value in [
        header("content-encoding"),
        header("content-language"),
        length,
        header("content-md5"),
        header("content-type"),
        header("date"),
        header("if-modified-since"),
        header("if-match"),
        header("if-none-match"),
        header("if-unmodified-since"),
        header("range"),
    ] {
        s.push_str(&value);
        s.push('\n');
    }
    s.push_str(&canonicalized_headers(request));
    s.push_str(&canonicalized_resource(request.url(), account));
    s
}

/// Every `x-ms-*` header, name lower-cased, sorted by name, one `name:value\n` each.
fn canonicalized_headers(request: &Request) -> String {
    let ms: BTreeMap<String, String> = request
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                v.as_str().trim().to_string(),
            )
        })
        .filter(|(k, _)| k.starts_with("x-ms-"))
        .collect();
    ms.into_iter().map(|(k, v)| format!("{k}:{v}\n")).collect()
}

/// `/<account><encoded path>`, then each query parameter (decoded, name lower-cased,
/// sorted; repeated values sorted and joined with commas) as `\nname:value`.
/// With a path-style URL (the emulator's `http://host:port/<account>/...`) the
/// account appears twice, as the service expects.
fn canonicalized_resource(url: &azure_core::http::Url, account: &str) -> String {
    let mut s = format!("/{account}{}", url.path());
    let mut params: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in url.query_pairs() {
        params
            .entry(k.to_lowercase())
            .or_default()
            .push(v.into_owned());
    }
    for (k, mut values) in params {
        values.sort();
        s.push_str(&format!("\n{k}:{}", values.join(",")));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use azure_core::http::{Method, Url};

    fn request(method: Method, url: &str, headers: &[(&'static str, &str)]) -> Request {
        let mut r = Request::new(Url::parse(url).unwrap(), method);
        for (k, v) in headers {
            r.insert_header(k.to_string(), v.to_string());
        }
        r
    }

    /// The example string-to-sign in "Authorize with Shared Key" (Blob service,
    /// version 2009-09-19 and later): a container's metadata read with x-ms-date and
    /// x-ms-version; its resource names the account twice, as a path-style URL does.
    #[test]
    fn string_to_sign_has_the_documented_shape() {
        let r = request(
            Method::Get,
            "http://myaccount.blob.core.windows.net/myaccount/mycontainer?restype=container&comp=metadata&timeout=20",
            &[
                ("x-ms-version", "2009-09-19"),
                ("x-ms-date", "Sun, 11 Oct 2009 21:49:13 GMT"),
            ],
        );
        let expected = "GET\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:Sun, 11 Oct 2009 21:49:13 GMT\nx-ms-version:2009-09-19\n/myaccount/myaccount/mycontainer\ncomp:metadata\nrestype:container\ntimeout:20";
        assert_eq!(string_to_sign(&r, "myaccount"), expected);
    }

    /// The documented canonicalized resource of a List Blobs call: repeated parameters
    /// become one, values sorted; names lower-cased; values decoded.
    #[test]
    fn canonicalized_resource_merges_sorts_and_decodes_parameters() {
        let url = Url::parse(
            "https://myaccount.blob.core.windows.net/mycontainer?restype=container&comp=list&include=snapshots&include=metadata&include=uncommittedblobs",
        )
        .unwrap();
        assert_eq!(
            canonicalized_resource(&url, "myaccount"),
            "/myaccount/mycontainer\ncomp:list\ninclude:metadata,snapshots,uncommittedblobs\nrestype:container"
        );
        let url = Url::parse(
            "http://127.0.0.1:10000/devstoreaccount1/c?Prefix=backups%2Fa%20b&comp=list",
        )
        .unwrap();
        assert_eq!(
            canonicalized_resource(&url, "devstoreaccount1"),
            "/devstoreaccount1/devstoreaccount1/c\ncomp:list\nprefix:backups/a b"
        );
    }

    /// A blob upload: the standard headers in their places, a zero length empty,
    /// `x-ms-*` sorted whatever their case, other headers left out.
    #[test]
    fn standard_headers_keep_their_places() {
        let r = request(
            Method::Put,
            "http://127.0.0.1:10000/acct/c/b",
            &[
                ("content-length", "11"),
                ("content-type", "application/octet-stream"),
                ("X-MS-Version", "2026-02-06"),
                ("x-ms-blob-type", "BlockBlob"),
                ("x-ms-date", "Mon, 01 Jan 2026 00:00:00 GMT"),
                ("user-agent", "azsdk-rust"),
                ("if-none-match", "*"),
            ],
        );
        let expected = "PUT\n\n\n11\n\napplication/octet-stream\n\n\n\n*\n\n\nx-ms-blob-type:BlockBlob\nx-ms-date:Mon, 01 Jan 2026 00:00:00 GMT\nx-ms-version:2026-02-06\n/acct/acct/c/b";
        assert_eq!(string_to_sign(&r, "acct"), expected);
        let mut empty = request(
            Method::Put,
            "http://127.0.0.1:10000/acct/c?restype=container",
            &[("content-length", "0")],
        );
        assert!(
            string_to_sign(&empty, "acct").starts_with("PUT\n\n\n\n"),
            "a zero length is signed as empty"
        );
        empty.headers_mut().remove("content-length");
        empty.set_body(azure_core::Bytes::from_static(b"abc"));
        assert!(
            string_to_sign(&empty, "acct").starts_with("PUT\n\n\n3\n"),
            "the body's length when no header says it"
        );
    }

    /// HMAC-SHA256 with the decoded key, base64: checked against Python's
    /// `base64.b64encode(hmac.new(b"0123456789abcdef0123456789abcdef", b"GET\n", "sha256").digest())`.
    #[test]
    fn signs_with_hmac_sha256_of_the_decoded_key() {
        let redactor = crate::log::Redactor::new();
        let key = redactor.secret(b"0123456789abcdef0123456789abcdef".to_vec());
        let p = SharedKeyPolicy::new("acct", &key);
        assert_eq!(
            p.authorization("GET\n"),
            "SharedKey acct:wJRNkAKdw4rogJ74klIG4aGftO9NNWIQqxYsPOwsvZ0="
        );
        assert!(
            !format!("{p:?}").contains("0123456789"),
            "Debug shows no key"
        );
    }
}
