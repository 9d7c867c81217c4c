//! Store round trips of one answer, counted on a wrapper of the store port (never timed): before
//! the model is called, exactly one call (the reservation's transaction with the session and the
//! credit account read alongside); after it, exactly one (the settle: usage log, counters, session,
//! credits). On both adapter families, for a tenant's API call and a visitor's widget call.

use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use reqwest::{Method, StatusCode};
use serde_json::json;

use kotoba_tests::peer::{ChatHook, ChatMode, ModelPeer};
use kotoba_tests::site::{TestSite, standard_site};
use kotoba_tests::{Backend, TestApp};
use shared::chat::{Caller, ChatMessage, ChatService, Question, RequestMeta};
use shared::credits::ledger::check_books;
use shared::ids::{SiteId, TenantId};
use shared::store::{
    Add, Condition, Item, ItemStore, Key, Page, Query, ReadWrite, StoreError, Update, Write,
};

/// Forwards every call to the real store and notes which method it was.
struct Counting {
    inner: Arc<dyn ItemStore>,
    calls: Mutex<Vec<&'static str>>,
}

impl Counting {
    fn note(&self, what: &'static str) {
        self.calls.lock().unwrap().push(what);
    }
    fn take(&self) -> Vec<&'static str> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }
}

impl ItemStore for Counting {
    fn get(&self, key: &Key) -> BoxFuture<'_, Result<Option<Item>, StoreError>> {
        self.note("get");
        self.inner.get(key)
    }
    fn put(&self, item: Item, condition: Condition) -> BoxFuture<'_, Result<(), StoreError>> {
        self.note("put");
        self.inner.put(item, condition)
    }
    fn delete(&self, key: &Key, condition: Condition) -> BoxFuture<'_, Result<(), StoreError>> {
        self.note("delete");
        self.inner.delete(key, condition)
    }
    fn update(&self, update: Update) -> BoxFuture<'_, Result<Item, StoreError>> {
        self.note("update");
        self.inner.update(update)
    }
    fn add(&self, add: Add) -> BoxFuture<'_, Result<i64, StoreError>> {
        self.note("add");
        self.inner.add(add)
    }
    fn query(&self, query: Query) -> BoxFuture<'_, Result<Page, StoreError>> {
        self.note("query");
        self.inner.query(query)
    }
    fn transact(&self, writes: Vec<Write>) -> BoxFuture<'_, Result<(), StoreError>> {
        self.note("transact");
        self.inner.transact(writes)
    }
    fn transact_and_read(&self, writes: Vec<Write>, reads: Vec<Key>) -> BoxFuture<'_, ReadWrite> {
        self.note("transact_and_read");
        self.inner.transact_and_read(writes, reads)
    }
}

/// A chat service of its own over the runner's data, reading and writing through a counting store.
fn counted_service(app: &TestApp) -> (Arc<Counting>, ChatService) {
    let p = &app.platform;
    let store = Arc::new(Counting {
        inner: p.store.clone(),
        calls: Mutex::new(Vec::new()),
    });
    let platform = Arc::new(shared::Platform {
        store: store.clone(),
        blobs: p.blobs.clone(),
        dir_blobs: p.dir_blobs.clone(),
        train_queue: p.train_queue.clone(),
        webhook_queue: p.webhook_queue.clone(),
        webhook_key: p.webhook_key.clone(),
        mail: p.mail.clone(),
        mail_from: p.mail_from.clone(),
        clock: p.clock.clone(),
        ids: p.ids.clone(),
        admin_key: p.admin_key.clone(),
        config: p.config.clone(),
    });
    let service = ChatService::new(platform, reqwest::Client::new()).expect("chat service");
    (store, service)
}

fn question(site: &SiteId, text: &str, session: Option<&str>) -> Question {
    Question {
        site_id: site.clone(),
        message: ChatMessage::parse(text).unwrap(),
        session_id: session.map(|s| shared::chat::sessions::SessionId::parse(s).unwrap()),
        model: None,
    }
}

async fn round_trips(backend: Backend) {
    let peer = ModelPeer::start(ChatMode::Reply {
        reply: "We open at nine.".into(),
        delay: std::time::Duration::ZERO,
    })
    .await;
    // A chat model and an embedding model: the reservation then holds credits, the month's chat and
    // its query tokens, and the answer costs something to settle.
    let vars = peer.vars(Some("gpt-4o-mini"), Some("text-embedding-3-small"));
    let extra: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let app = TestApp::spawn_with(backend, &extra).await;
    let site = TestSite::start().await;
    standard_site(&site);
    let (tenant_id, key) = app.create_tenant("pro").await;
    app.set_subscription(&tenant_id, "active").await;
    let site_id = app.create_site(&key, &["127.0.0.1"]).await["site_id"]
        .as_str()
        .unwrap()
        .to_string();
    let job = app.train(&key, &site_id, &site.url("/"), false).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let r = app
        .call(
            Method::PATCH,
            &format!("/api/sites/{site_id}"),
            Some(&key),
            Some(json!({"is_embed_enabled": true})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let (tenant, site_id) = (
        TenantId::parse(&tenant_id).unwrap(),
        SiteId::parse(&site_id).unwrap(),
    );

    let (store, service) = counted_service(&app);
    // What the store had seen when the model was called.
    let at_model: Arc<Mutex<Vec<Vec<&'static str>>>> = Arc::default();
    {
        let (store, at_model) = (store.clone(), at_model.clone());
        *peer.state.on_chat.lock().unwrap() = Some(ChatHook(Box::new(move || {
            at_model
                .lock()
                .unwrap()
                .push(store.calls.lock().unwrap().clone());
        })));
    }
    let callers = [
        ("tenant", Caller::Tenant(tenant.clone())),
        (
            "visitor",
            Caller::Visitor {
                origin: Some("http://127.0.0.1".into()),
                ip: Some("203.0.113.7".into()),
            },
        ),
    ];
    for (who, caller) in callers {
        // The first question warms the service's caches (site, tenant, index) and opens a session.
        let first = service
            .answer(
                caller.clone(),
                question(&site_id, "When do you open on Sundays?", None),
                RequestMeta::default(),
                None,
            )
            .await
            .unwrap_or_else(|e| panic!("{who}: {e:?}"));
        store.take();
        at_model.lock().unwrap().clear();

        let session = first.session_id.to_string();
        let second = service
            .answer(
                caller.clone(),
                question(&site_id, "And on Mondays?", Some(&session)),
                RequestMeta::default(),
                None,
            )
            .await
            .unwrap_or_else(|e| panic!("{who}: {e:?}"));
        let before_model = at_model.lock().unwrap().clone();
        assert_eq!(
            before_model,
            vec![vec!["transact_and_read"]],
            "{who}: store calls before the model was called"
        );
        assert_eq!(
            store.take(),
            vec!["transact_and_read", "transact", "add"],
            "{who}: store calls of the whole answer (then one settle, and anomaly detection's count)"
        );
        // That one call read the session: the conversation went on, its history in the prompt.
        assert_eq!(second.session_id.to_string(), session, "{who}");
        let prompt = peer.state.last_chat.lock().unwrap().clone().unwrap();
        assert!(
            prompt.to_string().contains("When do you open on Sundays?"),
            "{who}: the history is missing from {prompt}"
        );
    }
    // The settles charged the credits and balanced the books.
    check_books(app.platform.store.as_ref(), &tenant)
        .await
        .expect("the balance is the sum of the ledger");
    let page = app.get("/api/credits/transactions", &key).await;
    let chats = page.body["transactions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "usage" && e["function"] == "chat")
        .count();
    assert_eq!(chats, 4, "{:?}", page.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_store_call_before_the_model_and_one_after_embedded() {
    round_trips(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_store_call_before_the_model_and_one_after_aws() {
    round_trips(Backend::Aws).await;
}
