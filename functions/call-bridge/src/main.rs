#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (config, sdk) = shared::secrets::deployed_config(call_bridge::SECRETS).await?;
    shared::telemetry::init(config.log_json);
    let listen = config.bridge_listen;
    let platform = shared::Platform::from_config_with(config, sdk).await?;
    let server = call_bridge::BridgeServer::bind(platform, listen).await?;
    server.serve(call_bridge::shutdown_signal()).await
}
