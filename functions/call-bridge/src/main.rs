use shared::config::{Config, Mode};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::from_env(Mode::Deployed)?;
    shared::telemetry::init(config.log_json);
    let listen = config.bridge_listen;
    let platform = shared::Platform::from_config(config).await?;
    let server = call_bridge::BridgeServer::bind(platform, listen).await?;
    server.serve(call_bridge::shutdown_signal()).await
}
