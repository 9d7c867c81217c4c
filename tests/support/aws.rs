//! The local AWS emulator (moto server) that `make test` starts, and SDK configuration pointing at it.

/// The emulator's base URL. `make test` (through `infra/dev/with-moto`) sets it.
pub fn endpoint() -> String {
    std::env::var("KOTOBA_TEST_AWS_ENDPOINT").unwrap_or_else(|_| {
        panic!(
            "KOTOBA_TEST_AWS_ENDPOINT is not set: run the AWS-family tests through `make test` \
             or `infra/dev/with-moto cargo test …`, which start a moto server"
        )
    })
}

/// SDK configuration for the emulator: its endpoint, a fixed region and dummy static credentials.
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "testing", "testing", None, None, "kotoba-tests",
        ))
        .load()
        .await
}
