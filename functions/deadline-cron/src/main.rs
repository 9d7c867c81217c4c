use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let (config, sdk) = shared::secrets::deployed_config(deadline_cron::SECRETS).await?;
    shared::telemetry::init(config.log_json);
    let job = deadline_cron::job(shared::Platform::from_config_with(config, sdk).await?);
    lambda_runtime::run(service_fn(
        |event: LambdaEvent<deadline_cron::ScheduleEvent>| {
            deadline_cron::handle(&job, event.payload)
        },
    ))
    .await
}
