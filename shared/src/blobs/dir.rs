//! Blobs as files under a root directory, for the local runner, with HMAC-signed expiring URLs that the
//! runner serves through [`presigned_router`].
//!
//! Layout: the key `a/b/c.json` lives in the file `<root>/a/b/c.json%blob`. The suffix keeps object files
//! apart from directories, so `a` and `a/b` can both exist as in S3; `%` in a key segment is written
//! `%25`, so a segment can never end in the suffix by accident. Each file holds the content type on its
//! first line and the object's bytes after it: one file per object means one atomic rename per write,
//! so a reader never pairs new bytes with an old content type. Writes go to a temporary file in the same
//! directory (`…%tmp-<random>`) and are renamed into place.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::{Path as UrlPath, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::future::BoxFuture;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::{Blob, BlobEntry, BlobError, BlobStore, check_key, normalize_content_type};
use crate::clock::Clock;

type HmacSha256 = Hmac<Sha256>;

/// Suffix of the file that holds an object.
const OBJECT_SUFFIX: &str = "%blob";
/// Marker in the names of half-written temporary files (never listed).
const TEMP_MARKER: &str = "%tmp-";
/// Longest presigned lifetime, as S3's (SigV4 allows seven days).
const MAX_PRESIGN: Duration = Duration::from_secs(7 * 24 * 3600);
/// The URL path the runner serves presigned objects under.
const ROUTE_PREFIX: &str = "_blobs";

/// The secret that signs presigned URLs (HMAC-SHA256). Never printed.
#[derive(Clone)]
pub struct PresignKey(Arc<[u8]>);

impl PresignKey {
    /// A key from secret bytes; at least 32 of them (the HMAC-SHA256 output size).
    pub fn new(secret: impl Into<Vec<u8>>) -> anyhow::Result<Self> {
        let secret = secret.into();
        anyhow::ensure!(
            secret.len() >= 32,
            "a presign key needs at least 32 bytes, got {}",
            secret.len()
        );
        Ok(Self(secret.into()))
    }

    /// A fresh random key: URLs signed with it stop working when the process restarts with another.
    pub fn random() -> Self {
        let mut secret = vec![0u8; 32];
        rand::rng().fill_bytes(&mut secret);
        Self(secret.into())
    }

    /// The key kept in `path` (hex), or a new random one written there (readable by the owner only) so
    /// presigned URLs survive a restart of the local runner.
    pub fn load_or_create(path: &Path) -> anyhow::Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let secret = hex::decode(text.trim()).with_context(|| {
                    format!(
                        "{} does not hold a hex presign key; delete it to start over",
                        path.display()
                    )
                })?;
                Self::new(secret)
                    .with_context(|| format!("reading the presign key in {}", path.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::random();
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("creating {}", dir.display()))?;
                }
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                match options.open(path) {
                    Ok(mut file) => {
                        file.write_all(hex::encode(&key.0).as_bytes())
                            .context("writing the presign key")?;
                        file.sync_all().context("flushing the presign key")?;
                        Ok(key)
                    }
                    // Another process created it meanwhile: use theirs.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        Self::load_or_create(path)
                    }
                    Err(e) => Err(e).with_context(|| format!("creating {}", path.display())),
                }
            }
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    fn sign(&self, key: &str, expires: i64) -> anyhow::Result<Vec<u8>> {
        let mut mac = HmacSha256::new_from_slice(&self.0).context("initialising HMAC-SHA256")?;
        // Key and expiry are both covered; a key cannot contain '\n' (control characters are refused).
        mac.update(format!("GET\n{key}\n{expires}").as_bytes());
        Ok(mac.finalize().into_bytes().to_vec())
    }
}

impl std::fmt::Debug for PresignKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PresignKey(<redacted>)")
    }
}

/// A [`BlobStore`] on a local directory. See the module documentation for the layout.
pub struct DirBlobs {
    root: PathBuf,
    base_url: url::Url,
    key: PresignKey,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for DirBlobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirBlobs")
            .field("root", &self.root)
            .field("base_url", &self.base_url.as_str())
            .finish()
    }
}

impl DirBlobs {
    /// Stores objects under `root` (created if missing). Presigned URLs point at `base_url`, where the
    /// runner mounts [`presigned_router`]; `clock` decides their expiry.
    pub fn new(
        root: impl Into<PathBuf>,
        base_url: url::Url,
        key: PresignKey,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(&root)
            .with_context(|| format!("creating blob directory {}", root.display()))?;
        anyhow::ensure!(
            matches!(base_url.scheme(), "http" | "https") && base_url.query().is_none(),
            "blob base URL {base_url} must be http(s) without a query"
        );
        Ok(Self {
            root,
            base_url,
            key,
            clock,
        })
    }

    /// The directory the objects live under.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file holding `key` (which must already be checked).
    fn object_path(&self, key: &str) -> PathBuf {
        let mut path = self.root.clone();
        let mut segments = key.split('/').peekable();
        while let Some(segment) = segments.next() {
            if segments.peek().is_some() {
                path.push(encode_segment(segment));
            } else {
                path.push(format!("{}{OBJECT_SUFFIX}", encode_segment(segment)));
            }
        }
        path
    }

    /// Whether a presigned request for `key` carries a valid, unexpired signature.
    fn verify(&self, key: &str, expires: i64, signature_hex: &str) -> bool {
        if self.clock.unix_millis() >= expires.saturating_mul(1000) {
            return false;
        }
        let Ok(given) = hex::decode(signature_hex) else {
            return false;
        };
        let Ok(expected) = self.key.sign(key, expires) else {
            return false;
        };
        // Constant time, so the comparison leaks nothing about how much of a guess was right.
        expected.ct_eq(&given).into()
    }

    fn presigned_url(&self, key: &str, expires_in: Duration) -> Result<String, BlobError> {
        check_key(key)?;
        if expires_in > MAX_PRESIGN {
            return Err(BlobError::Backend(anyhow::anyhow!(
                "presigned URLs live at most seven days"
            )));
        }
        // Round the expiry up to a whole second, so the URL lives at least as long as asked.
        let expires_ms = self
            .clock
            .unix_millis()
            .saturating_add(expires_in.as_millis() as i64);
        let expires = expires_ms.div_euclid(1000) + i64::from(expires_ms.rem_euclid(1000) != 0);
        let signature = hex::encode(self.key.sign(key, expires)?);
        let mut url = self.base_url.clone();
        {
            let mut path = url.path_segments_mut().map_err(|()| {
                BlobError::Backend(anyhow::anyhow!(
                    "blob base URL {} cannot hold a path",
                    self.base_url
                ))
            })?;
            // Percent-encodes each segment, so spaces, `?`, `#` and Japanese survive the trip.
            path.pop_if_empty()
                .push(ROUTE_PREFIX)
                .extend(key.split('/'));
        }
        url.query_pairs_mut()
            .append_pair("expires", &expires.to_string())
            .append_pair("signature", &signature);
        Ok(url.into())
    }
}

fn encode_segment(segment: &str) -> String {
    segment.replace('%', "%25")
}

/// The key segment a file or directory name stands for; `None` for names this store did not write.
fn decode_segment(name: &str) -> Option<String> {
    let decoded = name.replace("%25", "%");
    // After decoding, any `%` left over came from a stray name (temp files, foreign files).
    (decoded.matches('%').count() == name.matches("%25").count()).then_some(decoded)
}

/// Runs blocking file work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, BlobError> + Send + 'static,
) -> Result<T, BlobError> {
    tokio::task::spawn_blocking(f)
        .await
        .context("blob file task failed")?
}

fn write_object(path: &Path, bytes: &[u8], content_type: &str) -> anyhow::Result<()> {
    let dir = path.parent().context("object path has no parent")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .context("object file name is not UTF-8")?;
    let stem = name.strip_suffix(OBJECT_SUFFIX).unwrap_or(name);
    let tmp = dir.join(format!(
        "{stem}{TEMP_MARKER}{}",
        uuid::Uuid::new_v4().simple()
    ));
    let written = (|| -> anyhow::Result<()> {
        let mut file =
            File::create_new(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        file.write_all(content_type.as_bytes())
            .context("writing content type")?;
        file.write_all(b"\n").context("writing content type")?;
        file.write_all(bytes).context("writing object bytes")?;
        file.sync_all().context("flushing object to disk")?;
        std::fs::rename(&tmp, path).with_context(|| format!("renaming into {}", path.display()))
    })();
    if written.is_err() {
        // Best effort: a leftover temp file is never listed, only wasted space.
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Reads the content-type line of an open object file; returns it with the header's length in bytes.
fn read_header(reader: &mut impl BufRead, path: &Path) -> anyhow::Result<(String, u64)> {
    let mut line = Vec::new();
    reader
        .take(1024)
        .read_until(b'\n', &mut line)
        .with_context(|| format!("reading {}", path.display()))?;
    anyhow::ensure!(
        line.last() == Some(&b'\n'),
        "blob file {} has no content-type line",
        path.display()
    );
    let header_len = line.len() as u64;
    line.pop();
    let content_type =
        String::from_utf8(line).with_context(|| format!("content type in {}", path.display()))?;
    Ok((content_type, header_len))
}

fn read_object(path: &Path) -> anyhow::Result<Option<Blob>> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
    };
    let mut reader = BufReader::new(file);
    let (content_type, _) = read_header(&mut reader, path)?;
    let mut bytes = Vec::new();
    reader
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(Some(Blob {
        bytes,
        content_type,
    }))
}

/// The object's size (file length less the header), or `None` if it vanished meanwhile.
fn object_size(path: &Path) -> anyhow::Result<Option<u64>> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
    };
    // Length and header from the same open file, so a concurrent rename cannot mix two versions.
    let len = file
        .metadata()
        .with_context(|| format!("reading metadata of {}", path.display()))?
        .len();
    let (_, header_len) = read_header(&mut BufReader::new(file), path)?;
    Ok(Some(len.saturating_sub(header_len)))
}

/// Collects the objects under `dir` (whose keys start with `key_prefix`) that match `prefix`.
fn walk(
    dir: &Path,
    key_prefix: &str,
    prefix: &str,
    out: &mut Vec<BlobEntry>,
) -> anyhow::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
    };
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        // Symlinks are neither: nothing outside the root is ever followed.
        let file_type = entry
            .file_type()
            .with_context(|| format!("inspecting {}", entry.path().display()))?;
        if file_type.is_dir() {
            let Some(segment) = decode_segment(&name) else {
                continue;
            };
            let child = format!("{key_prefix}{segment}/");
            if child.starts_with(prefix) || prefix.starts_with(&child) {
                walk(&entry.path(), &child, prefix, out)?;
            }
        } else if file_type.is_file() {
            let Some(segment) = name.strip_suffix(OBJECT_SUFFIX).and_then(decode_segment) else {
                continue;
            };
            let key = format!("{key_prefix}{segment}");
            if key.starts_with(prefix)
                && check_key(&key).is_ok()
                && let Some(size) = object_size(&entry.path())?
            {
                out.push(BlobEntry { key, size });
            }
        }
    }
    Ok(())
}

impl BlobStore for DirBlobs {
    fn put(
        &self,
        key: &str,
        bytes: Vec<u8>,
        content_type: &str,
    ) -> BoxFuture<'_, Result<(), BlobError>> {
        let checked = check_key(key).and_then(|()| normalize_content_type(content_type));
        let path = self.object_path(key);
        Box::pin(async move {
            let content_type = checked?;
            blocking(move || Ok(write_object(&path, &bytes, &content_type)?)).await
        })
    }

    fn get(&self, key: &str) -> BoxFuture<'_, Result<Option<Blob>, BlobError>> {
        let checked = check_key(key);
        let path = self.object_path(key);
        Box::pin(async move {
            checked?;
            blocking(move || Ok(read_object(&path)?)).await
        })
    }

    fn list(&self, prefix: &str) -> BoxFuture<'_, Result<Vec<BlobEntry>, BlobError>> {
        let prefix = prefix.to_string();
        let root = self.root.clone();
        Box::pin(async move {
            // Start from the deepest directory the prefix names instead of walking the whole tree.
            let dir_part = prefix
                .rsplit_once('/')
                .map_or("", |(dir, _)| dir)
                .to_string();
            if !dir_part.is_empty() && check_key(&dir_part).is_err() {
                // No valid key starts with an invalid directory part (`../`, `a//`): nothing to list.
                return Ok(Vec::new());
            }
            blocking(move || {
                let mut start = root;
                let mut key_prefix = String::new();
                if !dir_part.is_empty() {
                    for segment in dir_part.split('/') {
                        start.push(encode_segment(segment));
                    }
                    key_prefix = format!("{dir_part}/");
                }
                let mut out = Vec::new();
                walk(&start, &key_prefix, &prefix, &mut out)?;
                out.sort_by(|a, b| a.key.cmp(&b.key));
                Ok(out)
            })
            .await
        })
    }

    fn delete(&self, key: &str) -> BoxFuture<'_, Result<(), BlobError>> {
        let checked = check_key(key);
        let path = self.object_path(key);
        Box::pin(async move {
            checked?;
            blocking(move || match std::fs::remove_file(&path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                // Empty directories are left behind on purpose: removing them would race concurrent puts.
                Err(e) => Err(anyhow::Error::new(e)
                    .context(format!("deleting {}", path.display()))
                    .into()),
            })
            .await
        })
    }

    fn presign_get(
        &self,
        key: &str,
        expires_in: Duration,
    ) -> BoxFuture<'_, Result<String, BlobError>> {
        let url = self.presigned_url(key, expires_in);
        Box::pin(async move { url })
    }
}

/// Serves `GET /_blobs/{key}?expires=…&signature=…` for URLs from [`DirBlobs::presign_get`]:
/// 403 for a missing, wrong or expired signature, 404 for a missing object, else the bytes with their
/// content type.
pub fn presigned_router(blobs: Arc<DirBlobs>) -> Router {
    Router::new()
        .route("/_blobs/{*key}", get(serve_presigned))
        .with_state(blobs)
}

async fn serve_presigned(
    State(blobs): State<Arc<DirBlobs>>,
    UrlPath(key): UrlPath<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let (mut expires, mut signature) = (None, None);
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match name.as_ref() {
            "expires" => expires = value.parse::<i64>().ok(),
            "signature" => signature = Some(value.into_owned()),
            _ => {}
        }
    }
    let (Some(expires), Some(signature)) = (expires, signature) else {
        return StatusCode::FORBIDDEN.into_response();
    };
    if !blobs.verify(&key, expires, &signature) {
        return StatusCode::FORBIDDEN.into_response();
    }
    match blobs.get(&key).await {
        Ok(Some(blob)) => (
            [
                (header::CONTENT_TYPE, blob.content_type),
                // The stored type is the caller's word: stop browsers from second-guessing it.
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
            ],
            blob.bytes,
        )
            .into_response(),
        Ok(None) | Err(BlobError::InvalidKey(_)) => StatusCode::NOT_FOUND.into_response(),
        Err(error) => {
            tracing::error!(error = %error, key, "serving a presigned blob failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use tower::ServiceExt;

    use super::*;
    use crate::clock::ManualClock;

    crate::blob_conformance_tests!(dir_suite, crate::blobs::conformance::dir_harness());

    fn base() -> url::Url {
        url::Url::parse("http://runner.test/").unwrap()
    }

    fn setup() -> (tempfile::TempDir, ManualClock, Arc<DirBlobs>) {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::at(time::macros::datetime!(2026-01-01 00:00 UTC));
        let blobs = DirBlobs::new(
            dir.path().join("blobs"),
            base(),
            PresignKey::random(),
            Arc::new(clock.clone()),
        )
        .unwrap();
        (dir, clock, Arc::new(blobs))
    }

    /// GETs a presigned URL (or any path) through the router without a network.
    async fn fetch(blobs: &Arc<DirBlobs>, url: &str) -> (StatusCode, String, Vec<u8>) {
        let path = url.strip_prefix("http://runner.test").unwrap_or(url);
        let request = http::Request::get(path).body(Body::empty()).unwrap();
        let response = presigned_router(Arc::clone(blobs))
            .oneshot(request)
            .await
            .unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec();
        (status, content_type, body)
    }

    #[tokio::test]
    async fn presigned_urls_are_checked_and_expire() {
        let (_dir, clock, blobs) = setup();
        blobs
            .put(
                "sites/予約 page?.html",
                b"<p>hi</p>".to_vec(),
                "text/html; charset=utf-8",
            )
            .await
            .unwrap();
        let url = blobs
            .presign_get("sites/予約 page?.html", Duration::from_secs(60))
            .await
            .unwrap();
        assert!(url.starts_with("http://runner.test/_blobs/sites/"), "{url}");

        let (status, content_type, body) = fetch(&blobs, &url).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(content_type, "text/html; charset=utf-8");
        assert_eq!(body, b"<p>hi</p>");

        // A flipped signature digit, a missing signature, a longer expiry, another key: all refused.
        let (base, signature) = url.rsplit_once("signature=").unwrap();
        let flipped = if signature.starts_with('0') { "1" } else { "0" };
        let tampered = format!("{base}signature={flipped}{}", &signature[1..]);
        assert_eq!(fetch(&blobs, &tampered).await.0, StatusCode::FORBIDDEN);
        assert_eq!(
            fetch(&blobs, base.trim_end_matches('&')).await.0,
            StatusCode::FORBIDDEN
        );
        let expires: i64 = url
            .split("expires=")
            .nth(1)
            .unwrap()
            .split('&')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let extended = url.replace(
            &format!("expires={expires}"),
            &format!("expires={}", expires + 3600),
        );
        assert_eq!(fetch(&blobs, &extended).await.0, StatusCode::FORBIDDEN);
        blobs
            .put("sites/other.html", b"secret".to_vec(), "text/html")
            .await
            .unwrap();
        let other = format!(
            "http://runner.test/_blobs/sites/other.html?{}",
            url.split_once('?').unwrap().1
        );
        assert_eq!(fetch(&blobs, &other).await.0, StatusCode::FORBIDDEN);

        // Still valid just before the expiry, refused from the expiry on.
        clock.advance(Duration::from_secs(59));
        assert_eq!(fetch(&blobs, &url).await.0, StatusCode::OK);
        clock.advance(Duration::from_secs(1));
        assert_eq!(fetch(&blobs, &url).await.0, StatusCode::FORBIDDEN);
    }

    #[tokio::test]
    async fn presign_keys_persist_in_their_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/blob-signing.key");
        let first = PresignKey::load_or_create(&path).unwrap();
        let again = PresignKey::load_or_create(&path).unwrap();
        assert_eq!(first.sign("k", 1).unwrap(), again.sign("k", 1).unwrap());
        assert_ne!(
            first.sign("k", 1).unwrap(),
            PresignKey::random().sign("k", 1).unwrap()
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        std::fs::write(&path, "not hex").unwrap();
        assert!(PresignKey::load_or_create(&path).is_err());
        assert!(format!("{first:?}").contains("redacted"));
    }

    #[tokio::test]
    async fn a_valid_signature_for_a_missing_object_is_404() {
        let (_dir, _clock, blobs) = setup();
        let url = blobs
            .presign_get("nowhere/x.bin", Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(fetch(&blobs, &url).await.0, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn keys_may_be_both_object_and_prefix_and_contain_percent() {
        let (_dir, _clock, blobs) = setup();
        blobs.put("a", b"1".to_vec(), "text/plain").await.unwrap();
        blobs
            .put("a/b", b"22".to_vec(), "text/plain")
            .await
            .unwrap();
        blobs.put("a%blob/c%25", b"333".to_vec(), "").await.unwrap();
        let listed = blobs.list("a").await.unwrap();
        let keys: Vec<_> = listed.iter().map(|e| (e.key.as_str(), e.size)).collect();
        assert_eq!(keys, [("a", 1), ("a%blob/c%25", 3), ("a/b", 2)]);
        let blob = blobs.get("a%blob/c%25").await.unwrap().unwrap();
        assert_eq!(blob.content_type, super::super::DEFAULT_CONTENT_TYPE);
        assert_eq!(blobs.list("../").await.unwrap(), []);
        assert_eq!(blobs.list("a//").await.unwrap(), []);
    }

    #[tokio::test]
    async fn temp_files_are_never_listed() {
        let (dir, _clock, blobs) = setup();
        blobs.put("x/y", b"1".to_vec(), "text/plain").await.unwrap();
        std::fs::write(dir.path().join("blobs/x/y%tmp-0123"), b"text/plain\nhalf").unwrap();
        std::fs::write(dir.path().join("blobs/x/stray"), b"?").unwrap();
        let keys: Vec<_> = blobs
            .list("")
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.key)
            .collect();
        assert_eq!(keys, ["x/y"]);
    }
}
