//! The call bridge end to end, over real sockets on loopback: Twilio's webhook and Media Streams played by
//! a simulator, OpenAI Realtime played by a local peer speaking the GA events, the local runner (API and
//! bridge) in between, and the tenant's view through the management API.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use kotoba_tests::faults::{Fault, FaultyStore};
use kotoba_tests::realtime_peer::{PeerScript, RealtimePeer, SPEECH_END, SPEECH_START, pattern};
use kotoba_tests::twilio::{self, MediaStream, Received, Record, Step};
use kotoba_tests::{Backend, TEST_TWILIO_AUTH_TOKEN, TestApp};
use shared::ids::TenantId;
use shared::usage::{self, counters};
use shared::voice::signature::TwilioValidator;
use shared::voice::token::{StreamClaims, StreamTokenKey};

const CALLER: &str = "+819012345678";

/// The runner with its bridge pointed at the peer.
async fn voice_app(peer: &RealtimePeer, extra: &[(&str, &str)]) -> TestApp {
    let mut vars = vec![("OPENAI_REALTIME_URL", peer.url.as_str())];
    vars.extend_from_slice(extra);
    TestApp::spawn_with(Backend::Embedded, &vars).await
}

/// An active tenant answering on `number` (provisioned to it by the operator); returns (tenant id, API key).
async fn receptionist(app: &TestApp, plan: &str, number: &str) -> (String, String) {
    let (tenant, key) = app.create_tenant(plan).await;
    app.set_subscription(&tenant, "active").await;
    app.assign_number(number, &tenant).await;
    (tenant, key)
}

/// Twilio's webhook for a new call, signed by the official library; returns status and TwiML.
async fn place_call(app: &TestApp, call_sid: &str, to: &str) -> (StatusCode, String) {
    let params = twilio::webhook_params(call_sid, CALLER, to);
    let url = format!("{}/incoming-call-realtime", app.bridge_url);
    let signature = twilio::sign(TEST_TWILIO_AUTH_TOKEN, &url, &params).await;
    twilio::post_webhook(&app.client, &app.bridge_url, &params, Some(&signature)).await
}

/// Places a call and opens its media stream with the parameters from the TwiML.
async fn connect_call(app: &TestApp, call_sid: &str, to: &str) -> MediaStream {
    let (status, twiml) = place_call(app, call_sid, to).await;
    assert_eq!(status, StatusCode::OK);
    let (url, params) =
        twilio::stream_of(&twiml).unwrap_or_else(|| panic!("not a stream: {twiml}"));
    assert_eq!(
        url,
        format!(
            "{}/twilio-media",
            app.bridge_url.replace("http://", "ws://")
        )
    );
    MediaStream::connect(&app.bridge_url, call_sid, &params).await
}

/// A call log once the bridge has written it (it writes after closing the sockets).
async fn call_log(app: &TestApp, key: &str, call_sid: &str) -> Value {
    for _ in 0..600 {
        let r = app.get(&format!("/api/calls/{call_sid}"), key).await;
        if r.status == StatusCode::OK {
            return r.body;
        }
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{:?}", r.body);
        tokio::time::sleep(Duration::from_millis(50)).await; // poll:
    }
    panic!("no call log for {call_sid}");
}

async fn call_seconds(app: &TestApp, tenant: &str) -> i64 {
    counter(app, tenant, counters::CALL_SECONDS).await
}

async fn counter(app: &TestApp, tenant: &str, name: &str) -> i64 {
    let tenant = TenantId::parse(tenant).unwrap();
    let key = usage::tenant_month(&tenant, &usage::month_of(app.platform.clock.now()));
    app.platform
        .store
        .get(&key)
        .await
        .unwrap()
        .map(|item| item.count(name))
        .unwrap_or(0)
}

fn frames(audio: &[u8]) -> Vec<Step> {
    audio
        .chunks(twilio::FRAME_BYTES)
        .map(|c| Step::Audio(c.to_vec()))
        .collect()
}

/// Listen to the greeting, say something (between the peer's speech cues), press 5, hear the echo, hang up.
fn conversation(greeting_len: usize, utterance: &[u8]) -> Vec<Step> {
    let mut steps = vec![
        Step::WaitHeard(greeting_len as u64),
        Step::Audio(SPEECH_START.to_vec()),
    ];
    steps.extend(frames(utterance));
    steps.push(Step::Audio(SPEECH_END.to_vec()));
    steps.push(Step::Dtmf("5".into()));
    steps.push(Step::WaitReceived((greeting_len + utterance.len()) as u64));
    steps.push(Step::WaitPlayed);
    steps.push(Step::Stop);
    steps
}

/// Per response of the default script: 100 text + 500 audio tokens in, 100 text + 300 audio out, at
/// gpt-realtime's list prices ($4/$16 text, $32/$64 audio per 1M).
const MICROS_PER_RESPONSE: i64 = 400 + 16_000 + 1_600 + 19_200;

#[tokio::test]
async fn signatures_match_the_official_twilio_library() {
    let known = [
        ("CallSid", "CA1234567890ABCDE"),
        ("Caller", "+14158675309"),
        ("Digits", "1234"),
        ("From", "+14158675309"),
        ("To", "+18005551212"),
    ];
    let tricky = [
        ("To", "+81312345678"),
        ("CallerName", "山田 太郎 & <Co>"),
        ("Tag", "b"),
        ("Tag", "a"),
        // A repeated name with a repeated, identical value (Twilio's library signs it once).
        ("Same", "x"),
        ("Same", "x"),
        ("Empty", ""),
        ("ÄUmlaut", "ü"),
        ("a", "lowercase sorts after uppercase"),
    ];
    let cases: Vec<(&str, &str, twilio::Params)> = vec![
        (
            "12345",
            "https://mycompany.com/myapp.php?foo=1&bar=2",
            own(&known),
        ),
        (
            TEST_TWILIO_AUTH_TOKEN,
            "https://voice.example.com:443/incoming-call-realtime",
            own(&tricky),
        ),
        (
            "other",
            "http://127.0.0.1:3001/incoming-call-realtime?x=%20y",
            own(&tricky),
        ),
        ("other", "https://x.example/", vec![]),
        // Only the repeated identical value: ours must dedupe it exactly like the official library.
        (
            "other",
            "https://x.example/",
            own(&[("Same", "x"), ("Same", "x")]),
        ),
    ];
    let from_python = twilio::sign_all(&cases).await;
    assert_eq!(from_python[0], "RSOYDt4T1cUTdK1PDd93/VVr8B8=");
    let once = TwilioValidator::new("other").compute("https://x.example/", &own(&[("Same", "x")]));
    assert_eq!(
        from_python[4], once,
        "the official library signs a repeated identical value once"
    );
    for ((token, url, params), expected) in cases.iter().zip(&from_python) {
        assert_eq!(
            &TwilioValidator::new(token).compute(url, params),
            expected,
            "{url}"
        );
    }
}

fn own(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test]
async fn webhooks_need_a_valid_signature_over_the_configured_url() {
    let peer = RealtimePeer::start(PeerScript::default()).await;
    let app = voice_app(
        &peer,
        &[("KOTOBA_BRIDGE_PUBLIC_URL", "https://voice.example.test")],
    )
    .await;
    let number = "+15005550006";
    receptionist(&app, "pro", number).await;
    let sid = twilio::call_sid();
    let params = twilio::webhook_params(&sid, CALLER, number);
    let configured = "https://voice.example.test/incoming-call-realtime";

    // Twilio may sign with or without the default port: both are accepted.
    for url in [
        configured,
        "https://voice.example.test:443/incoming-call-realtime",
    ] {
        let signature = twilio::sign(TEST_TWILIO_AUTH_TOKEN, url, &params).await;
        let (status, twiml) =
            twilio::post_webhook(&app.client, &app.bridge_url, &params, Some(&signature)).await;
        assert_eq!(status, StatusCode::OK, "{url}: {twiml}");
        let (stream, parameters) = twilio::stream_of(&twiml).expect("a stream");
        assert_eq!(stream, "wss://voice.example.test/twilio-media");
        assert_eq!(parameters["call_sid"], sid);
        assert!(parameters["token"].starts_with("v1."));
    }

    // The URL the request actually reached (Host) is not what is signed; nor is another token's work.
    let reached = format!("{}/incoming-call-realtime", app.bridge_url);
    let mut tampered = params.clone();
    tampered.push(("Extra".into(), "1".into()));
    let signed_tampered = twilio::sign(TEST_TWILIO_AUTH_TOKEN, configured, &params).await;
    for (signature, body) in [
        (
            Some(twilio::sign(TEST_TWILIO_AUTH_TOKEN, &reached, &params).await),
            &params,
        ),
        (
            Some(twilio::sign("not-the-auth-token", configured, &params).await),
            &params,
        ),
        (Some(signed_tampered), &tampered),
        (Some("garbage".to_string()), &params),
        (None, &params),
    ] {
        let (status, text) =
            twilio::post_webhook(&app.client, &app.bridge_url, body, signature.as_deref()).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{text}");
        let body: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(body["error"]["code"], "forbidden");
    }
    assert_eq!(peer.connections(), 0);

    let health = app
        .client
        .get(format!("{}/healthz", app.bridge_url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
}

#[tokio::test]
async fn admission_fails_closed_and_never_reaches_the_model() {
    let peer = RealtimePeer::start(PeerScript::default()).await;
    let app = voice_app(&peer, &[]).await;

    let refused = |twiml: &str, language: &str| {
        assert!(
            twiml.contains(&format!("<Say language=\"{language}\">")),
            "{twiml}"
        );
        assert!(twiml.ends_with("<Hangup/></Response>"), "{twiml}");
        assert!(!twiml.contains("<Connect>"), "{twiml}");
    };

    // A number no tenant has: said in the number's likely language.
    let (status, twiml) = place_call(&app, &twilio::call_sid(), "+81312345678").await;
    assert_eq!(status, StatusCode::OK);
    refused(&twiml, "ja-JP");

    // A tenant whose subscription lapsed: said in the receptionist's language.
    let (tenant, key) = receptionist(&app, "pro", "+82212345678").await;
    let r = app
        .patch("/api/voice", &key, json!({"language": "ko"}))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    for status in ["canceled", "past_due"] {
        app.set_subscription(&tenant, status).await;
        refused(
            &place_call(&app, &twilio::call_sid(), "+82212345678")
                .await
                .1,
            "ko-KR",
        );
    }
    app.set_subscription(&tenant, "trialing").await;
    let (_, twiml) = place_call(&app, &twilio::call_sid(), "+82212345678").await;
    assert!(
        twiml.contains("<Connect><Stream"),
        "trialing tenants are answered: {twiml}"
    );

    // Minutes exhausted: less than a minute left of the starter plan's 60.
    let (tenant, _) = receptionist(&app, "starter", "+14155550100").await;
    let key = usage::tenant_month(
        &TenantId::parse(&tenant).unwrap(),
        &usage::month_of(app.platform.clock.now()),
    );
    usage::record(
        app.platform.store.as_ref(),
        key,
        counters::CALL_SECONDS,
        3_600 - 30,
        app.platform.clock.now(),
    )
    .await
    .unwrap();
    refused(
        &place_call(&app, &twilio::call_sid(), "+14155550100")
            .await
            .1,
        "en-US",
    );

    // Credits exhausted: minutes left on the plan, but less than a minute's credits.
    let (tenant, _) = receptionist(&app, "pro", "+14155550101").await;
    let tenant = TenantId::parse(&tenant).unwrap();
    let store = app.platform.store.as_ref();
    let left = shared::credits::account::balance(store, &tenant)
        .await
        .unwrap()
        .available;
    shared::credits::account::adjust(
        store,
        &tenant,
        shared::credits::Credits(5 - left.0),
        "test: less than a minute",
        None,
        app.platform.clock.now(),
    )
    .await
    .unwrap();
    refused(
        &place_call(&app, &twilio::call_sid(), "+14155550101")
            .await
            .1,
        "en-US",
    );

    // Malformed fields are a refusal too, never an error page.
    let params = twilio::webhook_params("not-a-call-sid", CALLER, "+14155550100");
    let url = format!("{}/incoming-call-realtime", app.bridge_url);
    let signature = twilio::sign(TEST_TWILIO_AUTH_TOKEN, &url, &params).await;
    let (status, twiml) =
        twilio::post_webhook(&app.client, &app.bridge_url, &params, Some(&signature)).await;
    assert_eq!(status, StatusCode::OK);
    refused(&twiml, "en-US");

    assert_eq!(
        peer.connections(),
        0,
        "a refused call must never open a model session"
    );
}

/// A second bridge on `app`'s data, reading through a store that fails on cue, with `settings` adjusted
/// by `adjust`; returns its base URL and the store's fault switch.
async fn faulty_bridge(
    app: &TestApp,
    adjust: impl FnOnce(&mut call_bridge::BridgeSettings),
) -> (String, std::sync::Arc<FaultyStore>) {
    let p = &app.platform;
    let store = FaultyStore::new(p.store.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut config = p.config.clone();
    config.bridge.public_url = Some(base.parse().unwrap());
    let platform = std::sync::Arc::new(shared::Platform {
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
        config: config.clone(),
    });
    let mut settings = call_bridge::BridgeSettings::from_config(&config).unwrap();
    adjust(&mut settings);
    let router = call_bridge::app(call_bridge::Bridge::with_settings(platform, settings));
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (base, store)
}

/// Twilio's webhook for a new call to a given bridge; returns status and body.
async fn place_call_at(
    app: &TestApp,
    bridge: &str,
    call_sid: &str,
    to: &str,
) -> (StatusCode, String) {
    let params = twilio::webhook_params(call_sid, CALLER, to);
    let url = format!("{bridge}/incoming-call-realtime");
    let signature = twilio::sign(TEST_TWILIO_AUTH_TOKEN, &url, &params).await;
    twilio::post_webhook(&app.client, bridge, &params, Some(&signature)).await
}

#[tokio::test]
async fn admission_fails_closed_when_the_store_or_the_stream_key_fails() {
    let peer = RealtimePeer::start(PeerScript::default()).await;
    let app = voice_app(&peer, &[]).await;
    let number = "+15005550006";
    receptionist(&app, "pro", number).await;
    let refused = |(status, twiml): (StatusCode, String)| {
        assert_eq!(status, StatusCode::OK, "{twiml}");
        assert!(twiml.contains("<Say language=\"en-US\">"), "{twiml}");
        assert!(twiml.ends_with("<Hangup/></Response>"), "{twiml}");
        assert!(!twiml.contains("<Connect>"), "{twiml}");
    };

    let (bridge, store) = faulty_bridge(&app, |_| {}).await;
    // The same bridge admits the call while the store answers (so the refusals below are the faults').
    let (status, twiml) = place_call_at(&app, &bridge, &twilio::call_sid(), number).await;
    assert_eq!(status, StatusCode::OK);
    assert!(twiml.contains("<Connect><Stream"), "{twiml}");
    // The number lookup fails; then each read of the admission check in turn: the receptionist's
    // settings, the tenant, the month's minutes.
    for (pk_prefix, sk_prefix) in [
        ("PHONE#", ""),
        ("TENANT#", "VOICE"),
        ("TENANT#", "PROFILE"),
        ("TENANT#", "USAGE#"),
    ] {
        store.set(Some(Fault {
            pk_prefix,
            sk_prefix,
        }));
        refused(place_call_at(&app, &bridge, &twilio::call_sid(), number).await);
    }
    store.set(None);

    // A validator but no key to sign stream tokens with: refused, not connected with an unsigned stream.
    let (bridge, _) = faulty_bridge(&app, |s| s.token_key = None).await;
    refused(place_call_at(&app, &bridge, &twilio::call_sid(), number).await);

    assert_eq!(
        peer.connections(),
        0,
        "a refused call must never open a model session"
    );
}

#[tokio::test]
async fn without_a_twilio_auth_token_every_call_is_refused() {
    let peer = RealtimePeer::start(PeerScript::default()).await;
    let app = voice_app(&peer, &[("TWILIO_AUTH_TOKEN", "")]).await;
    let number = "+15005550006";
    receptionist(&app, "pro", number).await;
    // Correctly signed with the token Twilio has: the bridge cannot check it, so it refuses.
    let (status, text) = place_call(&app, &twilio::call_sid(), number).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["error"]["code"], "forbidden");
    // A media socket with a token signed under the usual key is closed too.
    let key = StreamTokenKey::derive(TEST_TWILIO_AUTH_TOKEN);
    let sid = twilio::call_sid();
    let claims = StreamClaims {
        call_sid: sid.parse().unwrap(),
        tenant_id: TenantId::parse(&app.create_tenant("pro").await.0).unwrap(),
        from: CALLER.into(),
        to: number.parse().unwrap(),
        expires_at: app.platform.clock.unix_seconds() + 60,
    };
    let params = HashMap::from([
        ("call_sid".to_string(), sid.clone()),
        ("token".to_string(), key.sign(&claims)),
    ]);
    let record = MediaStream::connect(&app.bridge_url, &sid, &params)
        .await
        .run(vec![], None)
        .await;
    assert_eq!(record.close_code, Some(1008));
    assert!(record.audio.is_empty());
    assert_eq!(
        peer.connections(),
        0,
        "a refused call must never open a model session"
    );
}

#[tokio::test]
async fn media_sockets_without_a_valid_token_are_closed_before_the_model() {
    let peer = RealtimePeer::start(PeerScript::default()).await;
    let app = voice_app(&peer, &[]).await;
    let number = "+15005550006";
    let (tenant, _) = receptionist(&app, "pro", number).await;

    let sid = twilio::call_sid();
    let (_, twiml) = place_call(&app, &sid, number).await;
    let (_, genuine) = twilio::stream_of(&twiml).unwrap();

    let forged_key = StreamTokenKey::derive("guessed-auth-token");
    let forged = forged_key.sign(&StreamClaims {
        call_sid: sid.parse().unwrap(),
        tenant_id: TenantId::parse(&tenant).unwrap(),
        from: CALLER.into(),
        to: number.parse().unwrap(),
        expires_at: i64::MAX,
    });
    let with_token = |token: &str| HashMap::from([("token".to_string(), token.to_string())]);
    let cases: Vec<(String, HashMap<String, String>)> = vec![
        (sid.clone(), HashMap::new()),
        (sid.clone(), with_token(&forged)),
        (sid.clone(), with_token("v1.e30.AAAA")),
        (sid.clone(), with_token(&"x".repeat(5000))),
        // A genuine token presented for another call.
        (twilio::call_sid(), genuine.clone()),
    ];
    for (call, parameters) in cases {
        let record = MediaStream::connect(&app.bridge_url, &call, &parameters)
            .await
            .run(vec![], None)
            .await;
        assert_eq!(record.close_code, Some(1008), "{parameters:?}");
        assert!(record.audio.is_empty());
    }
    assert_eq!(peer.connections(), 0);

    // Media before start is refused too.
    let record = raw_socket_sending(
        &app,
        json!({"event": "media", "media": {"payload": "//8="}}),
    )
    .await;
    assert_eq!(record, Some(1008));
    assert_eq!(peer.connections(), 0);

    // The genuine token works once; replaying it cannot open a second model session.
    let record = MediaStream::connect(&app.bridge_url, &sid, &genuine)
        .await
        .run(vec![Step::WaitHeard(4_000), Step::Stop], None)
        .await;
    assert_eq!(record.close_code, Some(1000));
    assert_eq!(peer.connections(), 1);
    let record = MediaStream::connect(&app.bridge_url, &sid, &genuine)
        .await
        .run(vec![], None)
        .await;
    assert_eq!(record.close_code, Some(1008));
    assert_eq!(peer.connections(), 1);
}

/// Opens a media socket and sends one message; returns the close code the bridge answered with.
async fn raw_socket_sending(app: &TestApp, message: Value) -> Option<u16> {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let url = format!(
        "{}/twilio-media",
        app.bridge_url.replace("http://", "ws://")
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    ws.send(Message::Text(message.to_string().into()))
        .await
        .unwrap();
    while let Some(Ok(m)) = ws.next().await {
        if let Message::Close(frame) = m {
            return frame.map(|f| u16::from(f.code));
        }
    }
    None
}

#[tokio::test]
async fn a_call_greets_relays_both_ways_and_is_logged_and_metered() {
    let script = PeerScript::default();
    let greeting = script.greeting_audio.clone();
    let peer = RealtimePeer::start(script.clone()).await;
    let app = voice_app(&peer, &[]).await;
    let number = "+81312345678";
    let (tenant, key) = receptionist(&app, "pro", number).await;
    let r = app
        .patch(
            "/api/voice",
            &key,
            json!({"system_prompt": "You are AiLuna for Sushi Kotoba.", "greeting": "お電話ありがとうございます。", "voice": "coral", "language": "ja"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);

    let sid = twilio::call_sid();
    let utterance = pattern(1_600, 42);
    let record = connect_call(&app, &sid, number)
        .await
        .run(conversation(greeting.len(), &utterance), None)
        .await;

    // The greeting reaches the caller first; the caller's audio reaches the model byte for byte and comes
    // back byte for byte.
    assert_eq!(record.audio.len(), greeting.len() + utterance.len());
    assert_eq!(
        &record.audio[..greeting.len()],
        &greeting[..],
        "greeting first, untouched"
    );
    assert_eq!(
        &record.audio[greeting.len()..],
        &utterance[..],
        "echo untouched"
    );
    assert_eq!(record.malformed, 0);
    assert!(matches!(record.events.first(), Some(Received::Media(_))));
    assert!(record.clears().is_empty(), "no barge-in in this call");
    assert_eq!(record.close_code, Some(1000), "stop ends the call cleanly");

    let sessions = peer.sessions();
    assert_eq!(sessions.len(), 1);
    let session = &sessions[0];
    assert_eq!(
        session.caller_audio, record.sent_audio,
        "caller audio byte for byte"
    );
    // session.update first, with the tenant's settings and μ-law both ways; the greeting after it.
    let update = &session.events[0];
    assert_eq!(update["type"], "session.update");
    let s = &update["session"];
    assert_eq!(s["type"], "realtime");
    assert_eq!(s["instructions"], "You are AiLuna for Sushi Kotoba.");
    assert_eq!(s["audio"]["input"]["format"]["type"], "audio/pcmu");
    assert_eq!(s["audio"]["output"]["format"]["type"], "audio/pcmu");
    assert_eq!(s["audio"]["output"]["voice"], "coral");
    assert_eq!(s["audio"]["input"]["transcription"]["language"], "ja");
    assert_eq!(s["audio"]["input"]["turn_detection"]["type"], "server_vad");
    assert_eq!(session.events[1]["type"], "conversation.item.create");
    assert!(
        session.events[1]
            .to_string()
            .contains("お電話ありがとうございます。")
    );
    assert_eq!(session.events[2]["type"], "response.create");
    assert!(
        session
            .events_of("conversation.item.create")
            .iter()
            .any(|e| e.to_string().contains("pressed 5")),
        "the keypad press reaches the model"
    );
    assert!(
        session.events_of("response.cancel").is_empty(),
        "nothing to cancel"
    );
    let closed = wait_until(|| peer.sessions()[0].ended).await;
    assert!(closed);
    assert_eq!(
        peer.sessions()[0].close_code,
        Some(1000),
        "stop closes the model socket"
    );

    // The call log: transcript of both sides with the keypad press, summary, duration, cost.
    let log = call_log(&app, &key, &sid).await;
    assert_eq!(log["call_sid"], sid);
    assert_eq!(log["from"], CALLER);
    assert_eq!(log["to"], number);
    assert_eq!(log["end_reason"], "stopped");
    let transcript = log["transcript"].as_array().unwrap();
    let said = |speaker: &str, text: &str| {
        transcript
            .iter()
            .any(|l| l["speaker"] == speaker && l["text"] == text)
    };
    assert!(said("assistant", &script.greeting_text), "{transcript:?}");
    assert!(said("caller", &script.caller_text), "{transcript:?}");
    assert!(
        transcript.iter().any(|l| l["dtmf"] == "5"),
        "{transcript:?}"
    );
    let offsets: Vec<u64> = transcript
        .iter()
        .map(|l| l["offset_ms"].as_u64().unwrap())
        .collect();
    assert!(
        offsets.windows(2).all(|w| w[0] <= w[1]),
        "timestamps in order: {offsets:?}"
    );
    assert_eq!(
        transcript[0]["speaker"], "assistant",
        "the greeting comes first"
    );
    assert_eq!(log["summary_source"], "extractive");
    assert!(
        log["summary"]
            .as_str()
            .unwrap()
            .contains(&script.caller_text)
    );
    let seconds = log["duration_seconds"].as_i64().unwrap();
    assert!(seconds >= 1);
    assert_eq!(log["usage"]["responses"], 2, "greeting and echo");
    assert_eq!(log["cost_micros"], 2 * MICROS_PER_RESPONSE);
    assert_eq!(
        log["cost_usd"],
        json!((2 * MICROS_PER_RESPONSE) as f64 / 1e6)
    );
    assert!(log["metrics"]["first_audio_ms"].is_u64());
    assert!(log["metrics"]["frames_in"].as_u64().unwrap() >= record.sent_audio.len() as u64 / 160);
    assert_eq!(log["metrics"]["barge_ins"], 0);

    // The tenant's counters moved by exactly the call's seconds (the first-minute reservation settled).
    assert_eq!(call_seconds(&app, &tenant).await, seconds);
    assert_eq!(
        counter(&app, &tenant, counters::COST_MICROS).await,
        2 * MICROS_PER_RESPONSE
    );

    // Its credits: every started minute, one usage entry naming the call; the books balance.
    let tenant_id = TenantId::parse(&tenant).unwrap();
    let store = app.platform.store.as_ref();
    let entries = shared::credits::ledger::all(store, &tenant_id)
        .await
        .unwrap();
    let charged = entries
        .iter()
        .find(|e| e.function == Some(shared::credits::MeteredFunction::Call))
        .expect("a call usage entry");
    let minute = app.platform.config.credits.call_minute_credits;
    assert_eq!(charged.credits.0, -(seconds + 59) / 60 * minute);
    assert_eq!(charged.reference_id.clone(), Some(sid.to_string()));
    shared::credits::ledger::check_books(store, &tenant_id)
        .await
        .expect("the books balance");

    // Listed to its tenant, invisible to another.
    let r = app.get("/api/calls", &key).await;
    assert_eq!(r.body["calls"].as_array().unwrap().len(), 1);
    assert_eq!(r.body["calls"][0]["call_sid"], sid);
    let (_, other) = app.create_tenant("pro").await;
    let r = app.get(&format!("/api/calls/{sid}"), &other).await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::NOT_FOUND, "not_found")
    );
    assert!(
        app.get("/api/calls", &other).await.body["calls"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

async fn wait_until(mut done: impl FnMut() -> bool) -> bool {
    for _ in 0..600 {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await; // poll:
    }
    false
}

#[tokio::test]
async fn barge_in_clears_then_truncates_at_what_the_caller_heard() {
    let this_test = std::thread::current().id();
    let script = PeerScript {
        greeting_audio: pattern(24_000, 9), // 3 s, far longer than the caller lets it play
        hold_responses: true,
        ..PeerScript::default()
    };
    let greeting = script.greeting_audio.clone();
    let peer = RealtimePeer::start(script).await;
    let app = voice_app(&peer, &[]).await;
    let number = "+15005550006";
    let (_, key) = receptionist(&app, "pro", number).await;
    let sid = twilio::call_sid();
    let utterance = pattern(800, 3);

    let mut steps = vec![
        Step::WaitHeard(8_000),
        Step::PauseUntilClear,
        Step::Audio(SPEECH_START.to_vec()),
    ];
    steps.extend(frames(&utterance));
    steps.push(Step::Audio(SPEECH_END.to_vec()));
    steps.push(Step::WaitReceived(
        (greeting.len() + utterance.len()) as u64,
    ));
    steps.push(Step::WaitPlayed);
    steps.push(Step::Stop);
    let events = peer.subscribe();
    let record = connect_call(&app, &sid, number)
        .await
        .run(steps, Some(events))
        .await;

    let clears = record.clears();
    assert_eq!(clears.len(), 1, "{:?}", record.events);
    let heard_ms = clears[0] / 8;
    let position = |f: &dyn Fn(&Received) -> bool| record.events.iter().position(f);
    let clear_at = position(&|e| matches!(e, Received::Clear { .. })).unwrap();
    let truncate_at = position(
        &|e| matches!(e, Received::PeerEvent(v) if v["type"] == "conversation.item.truncate"),
    )
    .expect("a truncate reached the model");
    assert!(clear_at < truncate_at, "clear before truncate");
    // The order the bridge sent them in, across both sockets: the caller stops hearing first.
    let sent: Vec<(String, String)> = kotoba_tests::telemetry::init()
        .lock()
        .unwrap()
        .iter()
        .filter(|(thread, sink, kind)| {
            *thread == this_test
                && ((sink == "twilio" && kind == "clear")
                    || (sink == "model" && kind == "conversation.item.truncate"))
        })
        .map(|(_, sink, kind)| (sink.clone(), kind.clone()))
        .collect();
    let pair = |a: &str, b: &str| (a.to_string(), b.to_string());
    assert_eq!(
        sent,
        [
            pair("twilio", "clear"),
            pair("model", "conversation.item.truncate")
        ]
    );
    let Received::PeerEvent(truncate) = &record.events[truncate_at] else {
        unreachable!()
    };
    let end_ms = truncate["audio_end_ms"].as_u64().unwrap();
    assert!(
        end_ms.abs_diff(heard_ms) <= 20,
        "truncated at {end_ms} ms, heard {heard_ms} ms"
    );
    assert!(
        end_ms <= greeting.len() as u64 / 8,
        "never past what was generated"
    );
    assert_eq!(truncate["content_index"], 0);
    assert!(
        truncate["item_id"]
            .as_str()
            .unwrap()
            .starts_with("item_assistant_")
    );

    // The greeting's response was still in progress, so it is cancelled, once.
    let session = &peer.sessions()[0];
    assert_eq!(session.events_of("response.cancel").len(), 1);
    // The caller heard the start of the greeting, then their own echo: nothing of the cut greeting after.
    assert_eq!(&record.audio[..greeting.len()], &greeting[..]);
    assert_eq!(&record.audio[greeting.len()..], &utterance[..]);
    assert_eq!(record.heard_bytes, clears[0] + utterance.len() as u64);

    let log = call_log(&app, &key, &sid).await;
    assert_eq!(log["metrics"]["barge_ins"], 1);
    assert!(log["metrics"]["truncation_error_ms_max"].as_u64().unwrap() <= 20);
    let greeting_line = log["transcript"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["speaker"] == "assistant")
        .cloned()
        .unwrap();
    assert_eq!(greeting_line["interrupted"], true);
}

#[tokio::test]
async fn calls_end_at_their_maximum_length() {
    let peer = RealtimePeer::start(PeerScript::default()).await;
    let app = voice_app(&peer, &[("KOTOBA_CALL_MAX_SECONDS", "1")]).await;
    let number = "+15005550006";
    let (tenant, key) = receptionist(&app, "pro", number).await;
    let sid = twilio::call_sid();
    // The caller never hangs up.
    let record = connect_call(&app, &sid, number)
        .await
        .run(vec![], None)
        .await;
    assert_eq!(record.close_code, Some(1001));
    assert!(wait_until(|| peer.sessions()[0].ended).await);
    assert_eq!(peer.sessions()[0].close_code, Some(1001));
    let log = call_log(&app, &key, &sid).await;
    assert_eq!(log["end_reason"], "max_length");
    assert_eq!(
        call_seconds(&app, &tenant).await,
        log["duration_seconds"].as_i64().unwrap()
    );
}

#[tokio::test]
async fn shutdown_ends_calls_after_the_drain_deadline_and_still_logs_them() {
    let peer = RealtimePeer::start(PeerScript::default()).await;
    let mut app = voice_app(&peer, &[("KOTOBA_BRIDGE_DRAIN_SECONDS", "0")]).await;
    let number = "+15005550006";
    let (tenant, _) = receptionist(&app, "pro", number).await;
    let sid = twilio::call_sid();
    let stream = connect_call(&app, &sid, number).await;
    let call = tokio::spawn(stream.run(vec![], None));
    assert!(
        wait_until(|| peer
            .sessions()
            .first()
            .is_some_and(|s| !s.events_of("response.create").is_empty()))
        .await
    );

    app.stop().await; // as SIGTERM: returns once the bridge has drained and the call is logged
    let record: Record = call.await.unwrap();
    assert_eq!(record.close_code, Some(1001));
    let log = shared::voice::calls::get(
        app.platform.store.as_ref(),
        &TenantId::parse(&tenant).unwrap(),
        &sid.parse().unwrap(),
    )
    .await
    .expect("the call was logged before the bridge stopped");
    assert_eq!(log.end_reason, shared::voice::EndReason::Shutdown);
    assert_eq!(
        call_seconds(&app, &tenant).await,
        log.duration_seconds as i64
    );
    // No new calls once stopped.
    assert!(
        app.client
            .get(format!("{}/healthz", app.bridge_url))
            .send()
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hundred_simultaneous_calls_all_complete_with_correct_logs() {
    const TENANTS: usize = 10;
    const CALLS_PER_TENANT: usize = 10;
    let script = PeerScript {
        greeting_audio: pattern(1_600, 5),
        // No session starts until all hundred are open: the calls provably overlap.
        gather: Some(TENANTS * CALLS_PER_TENANT),
        ..PeerScript::default()
    };
    let greeting = script.greeting_audio.clone();
    let peer = RealtimePeer::start(script.clone()).await;
    let app = voice_app(&peer, &[]).await;

    let mut tenants = Vec::new();
    for t in 0..TENANTS {
        let number = format!("+1415555{t:04}");
        let (tenant, key) = receptionist(&app, "pro", &number).await;
        tenants.push((tenant, key, number));
    }
    // Every call's webhook, signed by the official library in one batch.
    let url = format!("{}/incoming-call-realtime", app.bridge_url);
    let calls: Vec<(usize, String, twilio::Params)> = (0..TENANTS * CALLS_PER_TENANT)
        .map(|i| {
            let sid = twilio::call_sid();
            let params = twilio::webhook_params(&sid, CALLER, &tenants[i % TENANTS].2);
            (i, sid, params)
        })
        .collect();
    let jobs: Vec<(&str, &str, twilio::Params)> = calls
        .iter()
        .map(|(_, _, p)| (TEST_TWILIO_AUTH_TOKEN, url.as_str(), p.clone()))
        .collect();
    let signatures = twilio::sign_all(&jobs).await;

    let runs = calls
        .iter()
        .zip(signatures)
        .map(|((i, sid, params), signature)| {
            let (app, greeting) = (&app, &greeting);
            async move {
                let (status, twiml) =
                    twilio::post_webhook(&app.client, &app.bridge_url, params, Some(&signature))
                        .await;
                assert_eq!(status, StatusCode::OK);
                let (_, parameters) = twilio::stream_of(&twiml).expect("admitted");
                let utterance = pattern(800, *i as u64 + 100);
                let record = MediaStream::connect(&app.bridge_url, sid, &parameters)
                    .await
                    .run(conversation(greeting.len(), &utterance), None)
                    .await;
                (record, utterance)
            }
        });
    let results = tokio::time::timeout(Duration::from_secs(120), futures::future::join_all(runs))
        .await
        .unwrap_or_else(|_| {
            panic!(
                "the calls never all overlapped: at most {} model sessions were open at once",
                peer.peak_sessions()
            )
        });
    assert_eq!(peer.connections(), TENANTS * CALLS_PER_TENANT);
    assert_eq!(peer.peak_sessions(), TENANTS * CALLS_PER_TENANT);
    for (record, utterance) in &results {
        assert_eq!(record.close_code, Some(1000));
        assert_eq!(&record.audio[..greeting.len()], &greeting[..]);
        assert_eq!(
            &record.audio[greeting.len()..],
            &utterance[..],
            "each call hears its own echo"
        );
    }
    for session in peer.sessions() {
        assert_eq!(session.events[0]["type"], "session.update");
    }

    for (t, (tenant, key, number)) in tenants.iter().enumerate() {
        let mut seconds = 0;
        for (i, sid, _) in calls.iter().filter(|(i, _, _)| i % TENANTS == t) {
            let log = call_log(&app, key, sid).await;
            assert_eq!(log["tenant_id"], tenant.as_str());
            assert_eq!(log["to"], number.as_str());
            assert_eq!(log["end_reason"], "stopped", "call {i}");
            assert!(log["transcript"].to_string().contains(&script.caller_text));
            assert_eq!(log["cost_micros"], 2 * MICROS_PER_RESPONSE);
            seconds += log["duration_seconds"].as_i64().unwrap();
        }
        let listed = app.get("/api/calls?limit=100", key).await;
        assert_eq!(
            listed.body["calls"].as_array().unwrap().len(),
            CALLS_PER_TENANT
        );
        assert_eq!(call_seconds(&app, tenant).await, seconds);
    }
}

async fn voice_management(app: TestApp) {
    let (_, a) = app.create_tenant("pro").await;
    let (_, b) = app.create_tenant("pro").await;

    // Numbers: provisioned by the operator into the pool (E.164, formatting tolerated); a tenant picks
    // one, unique across tenants. (Tests of the provisioning rules: tests/api_hardening.rs.)
    let r = app
        .post(
            "/api/admin/phone-numbers",
            &app.admin_key,
            json!({"number": "+81 3-1234-5678"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let r = app
        .post(
            "/api/phone-numbers",
            &a,
            json!({"number": "+81 3-1234-5678"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["number"], "+81312345678");
    for key in [&b, &a] {
        let r = app
            .post("/api/phone-numbers", key, json!({"number": "+81312345678"}))
            .await;
        assert_eq!(
            (r.status, r.error_code()),
            (StatusCode::CONFLICT, "conflict")
        );
        assert_eq!(r.body["error"]["details"]["number"], "+81312345678");
    }
    let r = app
        .post("/api/phone-numbers", &a, json!({"number": "03-1234-5678"}))
        .await;
    assert_eq!(
        (r.status, r.body["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("number"))
    );
    let r = app.get("/api/phone-numbers", &a).await;
    assert_eq!(r.body["phone_numbers"].as_array().unwrap().len(), 1);
    assert!(
        app.get("/api/phone-numbers", &b).await.body["phone_numbers"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let r = app
        .call(
            Method::DELETE,
            "/api/phone-numbers/+81312345678",
            Some(&b),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "another tenant's number");
    let r = app
        .call(
            Method::DELETE,
            "/api/phone-numbers/nonsense",
            Some(&a),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = app
        .call(
            Method::DELETE,
            "/api/phone-numbers/%2B81312345678",
            Some(&a),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = app
        .post("/api/phone-numbers", &b, json!({"number": "+81312345678"}))
        .await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "a released number can be picked again"
    );
    let r = app
        .call(
            Method::POST,
            "/api/phone-numbers",
            None,
            Some(json!({"number": "+81312345678"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    // Receptionist settings: AiLuna by default, every change a version, rollback as a new version.
    let r = app.get("/api/voice", &a).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["version"], 1);
    assert!(r.body["system_prompt"].as_str().unwrap().contains("AiLuna"));
    let r = app
        .patch(
            "/api/voice",
            &a,
            json!({"greeting": "もしもし", "language": "ja"}),
        )
        .await;
    assert_eq!(
        (r.status, r.body["version"].as_u64()),
        (StatusCode::OK, Some(2))
    );
    let r = app.patch("/api/voice", &a, json!({"voice": "cedar"})).await;
    assert_eq!(
        (r.body["version"].as_u64(), r.body["greeting"].as_str()),
        (Some(3), Some("もしもし"))
    );
    let r = app.patch("/api/voice", &a, json!({"voice": "robot"})).await;
    assert_eq!(
        (r.status, r.body["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("voice"))
    );
    let r = app.patch("/api/voice", &a, json!({})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = app.get("/api/voice/versions", &a).await;
    let versions: Vec<u64> = r.body["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, [3, 2, 1]);
    let r = app
        .post("/api/voice/rollback", &a, json!({"version": 1}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(
        (r.body["version"].as_u64(), r.body["language"].as_str()),
        (Some(4), Some("en"))
    );
    let r = app
        .post("/api/voice/rollback", &a, json!({"version": 99}))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(
        app.get("/api/voice", &b).await.body["version"],
        1,
        "tenants are separate"
    );

    // Calls: unknown or malformed sids are simply not found.
    let r = app
        .get(&format!("/api/calls/{}", twilio::call_sid()), &a)
        .await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::NOT_FOUND, "not_found")
    );
    let r = app.get("/api/calls/CA-nope", &a).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn voice_management_on_the_embedded_adapters() {
    voice_management(TestApp::spawn(Backend::Embedded).await).await;
}

#[tokio::test]
async fn voice_management_on_the_aws_adapters() {
    voice_management(TestApp::spawn(Backend::Aws).await).await;
}

/// The bridge on the AWS adapters, every call it makes signed as its ECS task and held by the IAM front
/// to the task role of infra/fargate.yaml: admission claims the stream and reserves minutes and credits
/// (transactions with condition checks), the end settles (the hold deleted) and logs the call.
#[tokio::test]
async fn a_call_on_the_aws_adapters_stays_within_the_bridge_task_role() {
    use kotoba_tests::iam::CALL_BRIDGE_TASK;
    use kotoba_tests::iam::policy::Decision;

    let script = PeerScript::default();
    let greeting = script.greeting_audio.clone();
    let peer = RealtimePeer::start(script).await;
    let app =
        TestApp::spawn_with(Backend::Aws, &[("OPENAI_REALTIME_URL", peer.url.as_str())]).await;
    let number = "+81312345679";
    let (tenant, key) = receptionist(&app, "pro", number).await;
    let sid = twilio::call_sid();
    let record = connect_call(&app, &sid, number)
        .await
        .run(conversation(greeting.len(), &pattern(800, 7)), None)
        .await;
    assert_eq!(record.close_code, Some(1000));
    let log = call_log(&app, &key, &sid).await;
    assert_eq!(log["end_reason"], "stopped");
    assert_eq!(
        call_seconds(&app, &tenant).await,
        log["duration_seconds"].as_i64().unwrap()
    );

    let iam = app
        .iam
        .clone()
        .expect("the AWS adapters go through the IAM front");
    let calls: Vec<_> = iam
        .calls()
        .into_iter()
        .filter(|c| c.principal == CALL_BRIDGE_TASK)
        .collect();
    let used: std::collections::BTreeSet<String> =
        calls.iter().map(|c| c.access.action.clone()).collect();
    for action in [
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:ConditionCheckItem",
        "dynamodb:DeleteItem",
    ] {
        assert!(
            used.contains(action),
            "the call never needed {action}: {used:?}"
        );
    }
    // Each of them is needed: the task role without it refuses the very access the call made.
    let role = iam.policy(CALL_BRIDGE_TASK).unwrap();
    for call in &calls {
        assert!(
            matches!(call.decision, Decision::Allowed { .. }),
            "{call:?}"
        );
        assert_eq!(
            role.without_action(&call.access.action)
                .decide(&call.access),
            Decision::ImplicitDeny,
            "{call:?}"
        );
    }
    // Dropping the app fails the test if any call was refused.
}

/// A second, real bridge server (its own port, SIGTERM-style stop handle) on `app`'s data, reading and
/// writing through `store`.
async fn bridge_on(
    app: &TestApp,
    store: std::sync::Arc<FaultyStore>,
) -> (
    String,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let p = &app.platform;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut config = p.config.clone();
    config.bridge.public_url = Some(base.parse().unwrap());
    let platform = std::sync::Arc::new(shared::Platform {
        store,
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
        config,
    });
    let server = call_bridge::BridgeServer::from_listener(platform, listener).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        server
            .serve(async move {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    (base, stop, task)
}

/// Connects a call to `bridge` (placed and signed as Twilio would).
async fn connect_call_at(app: &TestApp, bridge: &str, sid: &str, number: &str) -> MediaStream {
    let (status, twiml) = place_call_at(app, bridge, sid, number).await;
    assert_eq!(status, StatusCode::OK, "{twiml}");
    let (_, params) = twilio::stream_of(&twiml).unwrap_or_else(|| panic!("not a stream: {twiml}"));
    MediaStream::connect(bridge, sid, &params).await
}

#[tokio::test]
async fn a_panic_in_one_call_ends_that_call_only() {
    let script = PeerScript::default();
    let greeting = script.greeting_audio.clone();
    let peer = RealtimePeer::start(script).await;
    let app = voice_app(&peer, &[]).await;
    let (_, calm_key) = receptionist(&app, "pro", "+15005550101").await;
    receptionist(&app, "pro", "+15005550102").await;
    let store = FaultyStore::new(app.platform.store.clone());
    let (bridge, stop, server) = bridge_on(&app, store.clone()).await;

    // A long call on one number is under way …
    let calm_sid = twilio::call_sid();
    let calm = connect_call_at(&app, &bridge, &calm_sid, "+15005550101").await;
    let mut steps = vec![Step::WaitHeard(greeting.len() as u64)];
    steps.extend(frames(&pattern(4_000, 11)));
    steps.push(Step::WaitPlayed);
    steps.push(Step::Stop);
    let calm = tokio::spawn(calm.run(steps, None));
    assert!(wait_until(|| !peer.sessions().is_empty()).await);

    // … when the bridge hits a bug on another call: claiming its stream panics.
    let doomed_sid = twilio::call_sid();
    store.panic_on_write(Some(&doomed_sid));
    let doomed = connect_call_at(&app, &bridge, &doomed_sid, "+15005550102")
        .await
        .run(vec![], None)
        .await;
    assert_eq!(
        doomed.close_code,
        Some(1011),
        "the failed call is closed as an error"
    );

    // The other call goes on to its natural end and is logged as any call is.
    let calm = calm.await.unwrap();
    assert_eq!(calm.close_code, Some(1000));
    let log = call_log(&app, &calm_key, &calm_sid).await;
    assert_eq!(log["end_reason"], "stopped");
    // The bridge is still healthy, and the failed call no longer counts as in progress.
    let mut health = Value::Null;
    for _ in 0..200 {
        health = app
            .client
            .get(format!("{bridge}/healthz"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if health["calls"] == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await; // poll: until the last guard is dropped
    }
    assert_eq!(health, json!({"status": "ok", "calls": 0}));
    stop.send(()).unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn a_deploy_during_a_call_lets_it_run_to_its_natural_end() {
    let script = PeerScript::default();
    let greeting = script.greeting_audio.clone();
    let peer = RealtimePeer::start(script).await;
    let app = voice_app(&peer, &[]).await;
    let (_, key) = receptionist(&app, "pro", "+15005550103").await;
    let store = FaultyStore::new(app.platform.store.clone());
    let (bridge, stop, server) = bridge_on(&app, store).await;

    let sid = twilio::call_sid();
    let stream = connect_call_at(&app, &bridge, &sid, "+15005550103").await;
    let utterance = pattern(2_400, 5);
    let call = tokio::spawn(stream.run(conversation(greeting.len(), &utterance), None));
    assert!(wait_until(|| !peer.sessions().is_empty()).await);
    // ECS stops the task (SIGTERM; the drain deadline is the default 90 s): new calls are refused, the
    // health check fails, and the call in progress goes on.
    stop.send(()).unwrap();
    let health = app
        .client
        .get(format!("{bridge}/healthz"))
        .send()
        .await
        .map(|r| r.status());
    assert!(
        !matches!(health, Ok(StatusCode::OK)),
        "a draining bridge must not look healthy: {health:?}"
    );
    let record = call.await.unwrap();
    assert_eq!(
        record.close_code,
        Some(1000),
        "ended by the caller, not cut"
    );
    assert_eq!(&record.audio[greeting.len()..], &utterance[..]);
    // The server returns once the call has ended and is logged.
    server.await.unwrap();
    let log = call_log(&app, &key, &sid).await;
    assert_eq!(log["end_reason"], "stopped");
}

/// The ECS agent's task-protection endpoint, played by a peer that records every request.
struct EcsAgent {
    url: String,
    states: std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
}

impl EcsAgent {
    async fn start() -> EcsAgent {
        let states: std::sync::Arc<std::sync::Mutex<Vec<Value>>> = Default::default();
        let seen = states.clone();
        let app = axum::Router::new().route(
            call_bridge::protection::PROTECTION_PATH,
            axum::routing::put(move |axum::Json(body): axum::Json<Value>| {
                let seen = seen.clone();
                async move {
                    seen.lock().unwrap().push(body.clone());
                    axum::Json(json!({"protection": {
                        "ProtectionEnabled": body["ProtectionEnabled"],
                        "TaskArn": "arn:aws:ecs:us-east-1:123456789012:task/kotoba-test/abc",
                    }}))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        EcsAgent { url, states }
    }

    fn states(&self) -> Vec<Value> {
        self.states.lock().unwrap().clone()
    }
}

#[tokio::test]
async fn a_task_with_live_calls_protects_itself_from_scale_in() {
    let agent = EcsAgent::start().await;
    let script = PeerScript::default();
    let greeting = script.greeting_audio.clone();
    let peer = RealtimePeer::start(script).await;
    let app = voice_app(
        &peer,
        &[
            ("ECS_AGENT_URI", agent.url.as_str()),
            ("KOTOBA_CALL_MAX_SECONDS", "1500"),
        ],
    )
    .await;
    let number = "+15005550104";
    let (_, key) = receptionist(&app, "pro", number).await;
    assert!(agent.states().is_empty(), "no call, no protection");

    let sid = twilio::call_sid();
    let stream = connect_call(&app, &sid, number).await;
    let call = tokio::spawn(stream.run(conversation(greeting.len(), &pattern(800, 3)), None));
    // Protected while the call is live: longer than the longest call (25 minutes) plus a margin.
    assert!(wait_until(|| !agent.states().is_empty()).await);
    assert_eq!(
        agent.states()[0],
        json!({"ProtectionEnabled": true, "ExpiresInMinutes": 35})
    );
    let record = call.await.unwrap();
    assert_eq!(record.close_code, Some(1000));
    call_log(&app, &key, &sid).await;
    // Cleared once the last call has ended.
    assert!(
        wait_until(|| agent.states().last() == Some(&json!({"ProtectionEnabled": false}))).await,
        "{:?}",
        agent.states()
    );
    assert_eq!(agent.states().len(), 2, "{:?}", agent.states());
}
