#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let (config, sdk) = shared::secrets::deployed_config(chat::SECRETS).await?;
    shared::telemetry::init(config.log_json);
    let streaming = std::env::var("KOTOBA_LAMBDA_STREAMING").is_ok_and(|v| v == "true");
    let app = chat::app(shared::Platform::from_config_with(config, sdk).await?)?;
    // Behind a function URL in RESPONSE_STREAM mode the answer streams; behind the HTTP API it is buffered.
    if streaming {
        lambda_http::run_with_streaming_response(app).await
    } else {
        lambda_http::run(app).await
    }
}
