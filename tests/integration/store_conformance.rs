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
