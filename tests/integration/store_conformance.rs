//! The item store conformance suite on both adapters: the embedded SQLite store, and the DynamoDB store
//! on the emulator (each case on its own uniquely named table).

use std::sync::Arc;

use kotoba_tests::aws::{self, create_table};
use kotoba_tests::unique_name;
use shared::embedded_db::EmbeddedDb;
use shared::store::conformance::Subject;
use shared::store::{DynamoStore, EmbeddedStore};

shared::store_conformance_tests!(embedded, |clock| async move {
    let dir = tempfile::tempdir().unwrap();
    let db = EmbeddedDb::open(&dir.path().join("store.db")).unwrap();
    let store = EmbeddedStore::new(db, Arc::new(clock)).unwrap();
    Subject::new(store).keeping(dir)
});

shared::store_conformance_tests!(dynamodb, |clock| async move {
    let client = aws_sdk_dynamodb::Client::new(&aws::sdk_config().await);
    let table = unique_name("store");
    create_table(&client, &table).await.unwrap();
    // Creating it twice is harmless (the local runner does so on every start).
    create_table(&client, &table).await.unwrap();
    Subject::new(DynamoStore::new(client, table, Arc::new(clock)))
});

/// In front of the emulator: answers the first `conflicts` TransactWriteItems calls as DynamoDB does
/// when another transaction holds one of the items (`TransactionCanceledException` with a
/// `TransactionConflict` reason; moto never does), and forwards everything else to moto unchanged.
struct ConflictingDynamo {
    endpoint: String,
    transactions: Arc<std::sync::atomic::AtomicUsize>,
    _server: tokio::task::JoinHandle<()>,
}

impl ConflictingDynamo {
    async fn start(conflicts: usize) -> Self {
        use axum::body::Bytes;
        use axum::http::{HeaderMap, StatusCode};
        use std::sync::atomic::Ordering;

        let transactions = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let moto = aws::endpoint();
        let client = reqwest::Client::new();
        let seen = transactions.clone();
        let app = axum::Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
            let (moto, client, seen) = (moto.clone(), client.clone(), seen.clone());
            async move {
                let target = headers
                    .get("x-amz-target")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                if target.ends_with(".TransactWriteItems")
                    && seen.fetch_add(1, Ordering::SeqCst) < conflicts
                {
                    let body = serde_json::json!({
                        "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
                        "Message": "Transaction cancelled, please refer cancellation reasons for specific reasons [None, TransactionConflict]",
                        "CancellationReasons": [
                            {"Code": "None"},
                            {"Code": "TransactionConflict", "Message": "Transaction is ongoing for the item"}
                        ]
                    });
                    return (
                        StatusCode::BAD_REQUEST,
                        [("content-type", "application/x-amz-json-1.0")],
                        body.to_string(),
                    )
                        .into_response();
                }
                let mut forward = client.post(&moto).body(body);
                for (name, value) in &headers {
                    if name != "host" && name != "content-length" {
                        forward = forward.header(name, value);
                    }
                }
                let reply = forward.send().await.expect("moto answers");
                let status = StatusCode::from_u16(reply.status().as_u16()).unwrap();
                let content_type = reply
                    .headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("application/x-amz-json-1.0")
                    .to_string();
                let text = reply.text().await.expect("moto's body");
                (status, [("content-type", content_type)], text).into_response()
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            endpoint,
            transactions,
            _server: server,
        }
    }

    /// A store on a fresh table, whose calls go through this peer.
    async fn store(&self) -> (DynamoStore, String) {
        let moto = aws_sdk_dynamodb::Client::new(&aws::sdk_config().await);
        let table = unique_name("store");
        create_table(&moto, &table).await.unwrap();
        let config = aws_sdk_dynamodb::config::Builder::from(&aws::sdk_config().await)
            .endpoint_url(&self.endpoint)
            .build();
        let client = aws_sdk_dynamodb::Client::from_conf(config);
        let clock = shared::store::conformance::start_clock();
        (DynamoStore::new(client, &table, Arc::new(clock)), table)
    }
}

use axum::response::IntoResponse as _;

/// A transaction DynamoDB cancelled for a conflict (nothing written) runs again, and lands once.
#[tokio::test(flavor = "multi_thread")]
async fn dynamodb_transaction_conflicts_are_rerun() {
    use shared::store::{Add, ItemStore, Key, Write};
    use std::sync::atomic::Ordering;

    let peer = ConflictingDynamo::start(3).await;
    let (store, _) = peer.store().await;
    let key = Key::new("tenant#t1", "month");
    store
        .transact(vec![Write::Add(Add::new(key.clone(), "chats", 1).up_to(5))])
        .await
        .expect("the transaction lands after three conflicts");
    assert_eq!(peer.transactions.load(Ordering::SeqCst), 4);
    let item = store.get(&key).await.unwrap().expect("the counter");
    assert_eq!(item.count("chats"), 1, "written exactly once");
}

/// A conflict that never clears is a backend error after a bounded number of runs, and writes nothing.
#[tokio::test(flavor = "multi_thread")]
async fn dynamodb_transaction_conflicts_give_up_bounded() {
    use shared::store::dynamo::MAX_CONFLICT_RETRIES;
    use shared::store::{Add, ItemStore, Key, StoreError, Write};
    use std::sync::atomic::Ordering;

    let peer = ConflictingDynamo::start(usize::MAX).await;
    let (store, _) = peer.store().await;
    let key = Key::new("tenant#t1", "month");
    let result = store
        .transact(vec![Write::Add(Add::new(key.clone(), "chats", 1))])
        .await;
    assert!(matches!(result, Err(StoreError::Backend(_))), "{result:?}");
    assert_eq!(
        peer.transactions.load(Ordering::SeqCst),
        1 + MAX_CONFLICT_RETRIES as usize
    );
    assert!(store.get(&key).await.unwrap().is_none());
}
