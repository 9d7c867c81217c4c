use std::sync::Arc;

use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let (config, sdk) = shared::secrets::deployed_config(webhook_worker::SECRETS).await?;
    shared::telemetry::init(config.log_json);
    let platform = shared::Platform::from_config_with(config, sdk).await?;
    let worker = Arc::new(webhook_worker::Worker::new(&platform)?);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<_>| {
        let worker = worker.clone();
        async move { Ok::<_, lambda_runtime::Error>(worker.handle(event.payload).await) }
    }))
    .await
}
