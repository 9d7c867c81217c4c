//! The blob-store conformance suite: the same cases against every [`BlobStore`] adapter.
//!
//! An adapter's test file calls [`blob_conformance_tests!`](crate::blob_conformance_tests) with a module
//! name and an async expression building a [`BlobHarness`]: an empty store plus whatever must stay alive
//! while the case runs (a temporary directory, the server that answers presigned URLs).

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use super::{Blob, BlobEntry, BlobError, BlobStore, DEFAULT_CONTENT_TYPE};

/// One adapter under test, fresh for each case.
pub struct BlobHarness {
    /// An empty store.
    pub blobs: Arc<dyn BlobStore>,
    /// Whatever the setup started that must live as long as the case.
    pub keep: Box<dyn Any + Send>,
}

/// Aborts a spawned task when dropped: the server of a harness stops with its case.
pub struct AbortOnDrop<T>(pub tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A [`DirBlobs`](super::DirBlobs) in a temporary directory, its presigned URLs served by
/// [`presigned_router`](super::dir::presigned_router) on a random loopback port.
pub async fn dir_harness() -> BlobHarness {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base_url = url::Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
    let blobs = Arc::new(
        super::DirBlobs::new(
            dir.path().join("blobs"),
            base_url,
            super::PresignKey::random(),
            Arc::new(crate::clock::SystemClock),
        )
        .unwrap(),
    );
    let router = super::dir::presigned_router(Arc::clone(&blobs));
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    BlobHarness {
        blobs,
        keep: Box::new((dir, AbortOnDrop(server))),
    }
}

fn all_bytes() -> Vec<u8> {
    (0..=255u8)
        .chain((0..=255u8).rev())
        .chain(*b"\r\n\0end")
        .collect()
}

/// Objects read back as written: binary bytes, text, content types, Japanese keys.
pub async fn put_get_round_trip(h: BlobHarness) {
    let binary = all_bytes();
    h.blobs
        .put("recordings/call-1.bin", binary.clone(), "audio/wav")
        .await
        .unwrap();
    let got = h.blobs.get("recordings/call-1.bin").await.unwrap().unwrap();
    assert_eq!(
        got,
        Blob {
            bytes: binary,
            content_type: "audio/wav".into()
        }
    );

    let page = "<h1>ご予約の確認</h1>".as_bytes().to_vec();
    h.blobs
        .put(
            "sites/テスト/ページ 1.html",
            page.clone(),
            "text/html; charset=utf-8",
        )
        .await
        .unwrap();
    let got = h
        .blobs
        .get("sites/テスト/ページ 1.html")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        got,
        Blob {
            bytes: page,
            content_type: "text/html; charset=utf-8".into()
        }
    );

    // Empty objects exist, and an empty content type reads back as the default.
    h.blobs.put("empty", Vec::new(), "").await.unwrap();
    let got = h.blobs.get("empty").await.unwrap().unwrap();
    assert_eq!(
        got,
        Blob {
            bytes: Vec::new(),
            content_type: DEFAULT_CONTENT_TYPE.into()
        }
    );
}

/// A second put replaces the object and its content type.
pub async fn overwrite_replaces(h: BlobHarness) {
    h.blobs
        .put(
            "index.json",
            b"{\"v\":1, \"padding\":true}".to_vec(),
            "application/json",
        )
        .await
        .unwrap();
    h.blobs
        .put("index.json", b"v2".to_vec(), "text/plain")
        .await
        .unwrap();
    let got = h.blobs.get("index.json").await.unwrap().unwrap();
    assert_eq!(
        got,
        Blob {
            bytes: b"v2".to_vec(),
            content_type: "text/plain".into()
        }
    );
    assert_eq!(
        h.blobs.list("").await.unwrap(),
        [BlobEntry {
            key: "index.json".into(),
            size: 2
        }]
    );
}

/// Reading a key never written is `None`, not an error.
pub async fn get_missing_is_none(h: BlobHarness) {
    assert_eq!(h.blobs.get("nothing/here.txt").await.unwrap(), None);
    h.blobs
        .put("nothing/else.txt", b"x".to_vec(), "text/plain")
        .await
        .unwrap();
    assert_eq!(h.blobs.get("nothing/here.txt").await.unwrap(), None);
    assert_eq!(
        h.blobs.get("nothing").await.unwrap(),
        None,
        "a prefix is not an object"
    );
}

/// A listing holds exactly the keys starting with the prefix (a string prefix, not a directory), in
/// key order, with their sizes.
pub async fn list_by_prefix(h: BlobHarness) {
    let objects = [
        ("sites/a/2.json", 2),
        ("sites/a/10.json", 10),
        ("sites/a/1.json", 1),
        ("sites/ab/x", 3),
        ("sites/a", 4),
        ("sites/b/1.json", 5),
        ("other/1", 6),
    ];
    for (key, size) in objects {
        h.blobs
            .put(key, vec![b'x'; size], "application/json")
            .await
            .unwrap();
    }
    let listed = |entries: Vec<BlobEntry>| {
        entries
            .into_iter()
            .map(|e| (e.key, e.size))
            .collect::<Vec<_>>()
    };
    let owned = |v: &[(&str, u64)]| {
        v.iter()
            .map(|(k, s)| (k.to_string(), *s))
            .collect::<Vec<_>>()
    };

    let a_dir = [
        ("sites/a/1.json", 1),
        ("sites/a/10.json", 10),
        ("sites/a/2.json", 2),
    ];
    assert_eq!(
        listed(h.blobs.list("sites/a/").await.unwrap()),
        owned(&a_dir)
    );
    assert_eq!(
        listed(h.blobs.list("sites/a").await.unwrap()),
        owned(&[
            ("sites/a", 4),
            ("sites/a/1.json", 1),
            ("sites/a/10.json", 10),
            ("sites/a/2.json", 2),
            ("sites/ab/x", 3)
        ])
    );
    assert_eq!(
        listed(h.blobs.list("sites/a/1").await.unwrap()),
        owned(&[("sites/a/1.json", 1), ("sites/a/10.json", 10)])
    );
    assert_eq!(h.blobs.list("sites/").await.unwrap().len(), 6);
    assert_eq!(h.blobs.list("").await.unwrap().len(), 7);
    assert_eq!(h.blobs.list("missing/").await.unwrap(), []);
    let all = h.blobs.list("").await.unwrap();
    assert!(
        all.windows(2).all(|w| w[0].key < w[1].key),
        "listing out of order: {all:?}"
    );
}

/// Delete removes the object; deleting a missing key is fine.
pub async fn delete_removes(h: BlobHarness) {
    h.blobs
        .put("tmp/a", b"a".to_vec(), "text/plain")
        .await
        .unwrap();
    h.blobs
        .put("tmp/b", b"b".to_vec(), "text/plain")
        .await
        .unwrap();
    h.blobs.delete("tmp/a").await.unwrap();
    assert_eq!(h.blobs.get("tmp/a").await.unwrap(), None);
    assert_eq!(
        h.blobs.list("tmp/").await.unwrap(),
        [BlobEntry {
            key: "tmp/b".into(),
            size: 1
        }]
    );
    h.blobs.delete("tmp/a").await.unwrap();
    h.blobs.delete("never/written").await.unwrap();
    assert!(h.blobs.get("tmp/b").await.unwrap().is_some());
}

/// Keys that are empty, absolute or climb out of the store are refused by every operation.
pub async fn invalid_keys_rejected(h: BlobHarness) {
    for key in [
        "",
        "../x",
        "/abs",
        "a//b",
        "a/../b",
        "./a",
        "a/",
        "tab\there",
        "back\\slash",
    ] {
        let invalid =
            |r: Result<(), BlobError>| matches!(r, Err(BlobError::InvalidKey(k)) if k == key);
        assert!(
            invalid(h.blobs.put(key, b"x".to_vec(), "text/plain").await),
            "put {key:?}"
        );
        assert!(invalid(h.blobs.get(key).await.map(drop)), "get {key:?}");
        assert!(invalid(h.blobs.delete(key).await), "delete {key:?}");
        assert!(
            invalid(
                h.blobs
                    .presign_get(key, Duration::from_secs(60))
                    .await
                    .map(drop)
            ),
            "presign {key:?}"
        );
    }
    assert_eq!(h.blobs.list("").await.unwrap(), []);
}

/// A presigned URL works for a plain HTTP client: the bytes, with their content type.
pub async fn presigned_get_works(h: BlobHarness) {
    let bytes = all_bytes();
    let key = "recordings/予約 #1?.wav";
    h.blobs.put(key, bytes.clone(), "audio/wav").await.unwrap();
    let url = h
        .blobs
        .presign_get(key, Duration::from_secs(300))
        .await
        .unwrap();
    // No proxy: the URL may point at loopback, which a proxy from the environment cannot reach.
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let response = http.get(&url).send().await.unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK, "GET {url}");
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(content_type, "audio/wav");
    assert_eq!(response.bytes().await.unwrap().to_vec(), bytes);

    // Refusal of wrong or expired signatures is tested beside the dir adapter only: moto does not check
    // S3 signatures, so this suite cannot hold S3 to it.
}

/// Generates one `#[tokio::test]` per case in a module `$module`, each building its own harness with
/// the async expression `$setup` (evaluated inside the module, which sees its parent's items).
#[macro_export]
macro_rules! blob_conformance_tests {
    ($module:ident, $setup:expr) => {
        $crate::blob_conformance_tests!(@cases $module, $setup, [
            put_get_round_trip,
            overwrite_replaces,
            get_missing_is_none,
            list_by_prefix,
            delete_removes,
            invalid_keys_rejected,
            presigned_get_works,
        ]);
    };
    (@cases $module:ident, $setup:expr, [$($case:ident),* $(,)?]) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test]
                async fn $case() {
                    let harness = $setup.await;
                    $crate::blobs::conformance::$case(harness).await;
                }
            )*
        }
    };
}
