#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let (config, sdk) = shared::secrets::deployed_config(credits::SECRETS).await?;
    shared::telemetry::init(config.log_json);
    let platform = shared::Platform::from_config_with(config, sdk).await?;
    lambda_http::run(credits::app(platform)).await
}
