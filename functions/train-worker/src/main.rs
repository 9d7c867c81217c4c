use std::sync::Arc;

use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let (config, sdk) = shared::secrets::deployed_config(train_worker::SECRETS).await?;
    shared::telemetry::init(config.log_json);
    let worker = Arc::new(train_worker::Worker::new(
        shared::Platform::from_config_with(config, sdk).await?,
    )?);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<_>| {
        let worker = worker.clone();
        let deadline = train_worker::lambda_deadline(event.context.deadline);
        async move {
            Ok::<_, lambda_runtime::Error>(worker.handle_until(event.payload, Some(deadline)).await)
        }
    }))
    .await
}
