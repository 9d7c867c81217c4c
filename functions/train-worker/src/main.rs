use std::sync::Arc;

use lambda_runtime::{LambdaEvent, service_fn};
use shared::config::{Config, Mode};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let config = Config::from_env(Mode::Deployed)?;
    shared::telemetry::init(config.log_json);
    let worker = Arc::new(train_worker::Worker::new(
        shared::Platform::from_config(config).await?,
    )?);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<_>| {
        let worker = worker.clone();
        async move { Ok::<_, lambda_runtime::Error>(worker.handle(event.payload).await) }
    }))
    .await
}
