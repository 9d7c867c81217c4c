use shared::config::{Config, Mode};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let config = Config::from_env(Mode::Deployed)?;
    shared::telemetry::init(config.log_json);
    let platform = shared::Platform::from_config(config).await?;
    lambda_http::run(billing::app(platform)).await
}
