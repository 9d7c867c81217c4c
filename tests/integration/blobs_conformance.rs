//! The blob conformance suite on the directory adapter (with its presigned-URL server) and on S3
//! (against the emulator).

use std::sync::Arc;

use kotoba_tests::{aws, unique_name};
use shared::blobs::S3Blobs;
use shared::blobs::conformance::{BlobHarness, dir_harness};
use shared::blobs::s3::{S3Settings, create_bucket, s3_client};

/// A fresh bucket of its own, listed two keys per page so every listing exercises continuation.
async fn s3_harness() -> BlobHarness {
    let sdk = aws::sdk_config().await;
    let client = s3_client(&sdk, &S3Settings::emulator());
    let bucket = unique_name("blobs");
    create_bucket(&client, &bucket).await.unwrap();
    // Creating it again is fine: the local runner does so at every start.
    create_bucket(&client, &bucket).await.unwrap();
    BlobHarness {
        blobs: Arc::new(S3Blobs::new(client, bucket).with_list_page_size(2)),
        keep: Box::new(()),
    }
}

shared::blob_conformance_tests!(dir, dir_harness());
shared::blob_conformance_tests!(s3, s3_harness());
