#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let (config, _sdk) = shared::secrets::deployed_config(console::SECRETS).await?;
    shared::telemetry::init(config.log_json);
    lambda_http::run(console::app(&config)).await
}
