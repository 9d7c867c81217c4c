use shared::config::{Config, Mode};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::from_env(Mode::Local)?;
    shared::telemetry::init(config.log_json);
    let runner = local_runner::start(config).await?;
    // Serves, trains the demo site on the sample site, then prints the banner.
    runner.serve_until_ctrl_c().await
}
