//! IAM, enforced in the tests: every AWS call a function makes is held to that function's role as
//! `template.yaml` (and `infra/fargate.yaml` for the call bridge's task) define it.
//!
//! moto can enforce IAM itself (`INITIAL_NO_AUTH_ACTION_COUNT`), but moto 5 checks DynamoDB, SESv2 and
//! Secrets Manager calls against the resource `*` only (a grant on a table's or an identity's ARN is
//! never matched, so every scoped grant is refused), authorizes a transaction as the action
//! `dynamodb:TransactWriteItems` (which no role can grant: AWS checks each item's PutItem/UpdateItem/
//! DeleteItem/ConditionCheckItem on its table), does not evaluate conditions, and would switch the whole
//! shared emulator to signed requests. Only its SQS and S3 checks use resource ARNs. So the harness
//! enforces instead, in front of the emulator: [`front::IamFront`] maps each request to the actions and
//! resource ARNs AWS's Service Authorization Reference says it needs ([`access`]) and evaluates the
//! role's statements ([`policy`]): explicit deny, then allow, with action and resource wildcards.
//!
//! The roles come from the templates themselves: each function's `Policies` (inline statements and SAM
//! policy templates), resolved by [`cfn`] with every `!Ref`/`!GetAtt`/`!Sub` pointing at the resources
//! this test created. Each function's calls are signed with an access key named after its logical id;
//! the local runner gives every function its own platform with its own credentials.
//!
//! To extend: a new AWS operation is mapped in [`access`]; a new resource the policies name is added to
//! [`stacks`]; a new principal (a new function) comes with the template.

pub mod access;
pub mod cfn;
pub mod front;
pub mod policy;

use std::collections::BTreeMap;

use serde_json::{Value as Json, json};
use serde_norway::Value;

pub use front::IamFront;

use cfn::{ACCOUNT, Deployed, REGION, Stack};
use policy::Policy;

/// The principal of the call bridge's ECS task (infra/fargate.yaml `TaskRole`).
pub const CALL_BRIDGE_TASK: &str = "CallBridgeTask";
/// The access key the harness itself uses (`crate::aws::sdk_config`): never checked.
pub const HARNESS: &str = "testing";
/// The stack name the emulated SAM stack has (the bridge stack imports its exports).
pub const APP_STACK: &str = "kotoba-test";

fn load(relative: &str) -> Value {
    let path = format!("{}/../{relative}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("parsing {path}: {e}"))
}

/// A placeholder ARN for a secret the test did not create (the policies still name it).
pub fn placeholder_secret(name: &str) -> String {
    format!("arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:kotoba-test/{name}-AbCdEf")
}

/// The ARNs the stacks' secrets have on the emulator (placeholders unless a test created them).
#[derive(Debug, Clone)]
pub struct SecretArns {
    pub admin_key: String,
    pub webhook_key: String,
    pub openai: String,
    pub stripe_key: String,
    pub stripe_webhook: String,
    pub twilio: String,
}

impl Default for SecretArns {
    fn default() -> Self {
        Self {
            admin_key: placeholder_secret("admin-key"),
            webhook_key: placeholder_secret("webhook-key"),
            openai: placeholder_secret("openai-api-key"),
            stripe_key: placeholder_secret("stripe-secret-key"),
            stripe_webhook: placeholder_secret("stripe-webhook-secret"),
            twilio: placeholder_secret("twilio-auth-token"),
        }
    }
}

/// The resources of a test on the emulator, named as the templates name them.
#[derive(Debug, Clone)]
pub struct Emulated {
    pub table: String,
    pub bucket: String,
    pub train_queue_url: String,
    pub train_dlq_url: String,
    pub webhook_queue_url: String,
    pub webhook_dlq_url: String,
    /// The deadline function's name (what the management function invokes).
    pub deadline_function: String,
    pub secrets: SecretArns,
}

fn queue(url: &str) -> Deployed {
    let name = url.rsplit('/').next().unwrap_or(url).to_string();
    Deployed::new(url)
        .with("Arn", access::queue_arn(url))
        .with("QueueName", name)
}

/// The SAM stack and the bridge's stack as deployed on these resources.
pub fn stacks(e: &Emulated) -> (Stack, Stack) {
    let table_arn = access::table_arn(&e.table);
    let function = |name: &str| Deployed::new(name).with("Arn", access::function_arn(name));
    let app = Stack::new(APP_STACK)
        .parameter("Stage", "test")
        .parameter("OpenAIApiKeySecretArn", &e.secrets.openai)
        .parameter("StripeSecretKeySecretArn", &e.secrets.stripe_key)
        .parameter("StripeWebhookSecretSecretArn", &e.secrets.stripe_webhook)
        .parameter("PublicUrl", "https://kotoba.test")
        .resource(
            "Table",
            Deployed::new(&e.table)
                .with("Arn", &table_arn)
                .with("StreamArn", format!("{table_arn}/stream/0")),
        )
        .resource(
            "Bucket",
            Deployed::new(&e.bucket)
                .with("Arn", format!("arn:aws:s3:::{}", e.bucket))
                .with("DomainName", format!("{}.s3.amazonaws.com", e.bucket)),
        )
        .resource("TrainQueue", queue(&e.train_queue_url))
        .resource("TrainDeadLetterQueue", queue(&e.train_dlq_url))
        .resource("WebhookQueue", queue(&e.webhook_queue_url))
        .resource("WebhookDeadLetterQueue", queue(&e.webhook_dlq_url))
        .resource(
            "DeadlineDeadLetterQueue",
            queue(&format!(
                "http://sqs.{REGION}.amazonaws.com/{ACCOUNT}/kotoba-test-deadline-dlq"
            )),
        )
        .resource("AdminKeySecret", Deployed::new(&e.secrets.admin_key))
        .resource("WebhookKeySecret", Deployed::new(&e.secrets.webhook_key))
        .resource("DeadlineCronFunction", function(&e.deadline_function))
        .for_template(&load("template.yaml"));
    let bridge = Stack::new("kotoba-test-call-bridge")
        .parameter("AppStackName", APP_STACK)
        .parameter("TwilioAuthTokenSecretArn", &e.secrets.twilio)
        .parameter("OpenAIApiKeySecretArn", &e.secrets.openai)
        .export(&format!("{APP_STACK}-TableName"), &e.table)
        .export(&format!("{APP_STACK}-BucketName"), &e.bucket)
        .export(&format!("{APP_STACK}-TrainQueueUrl"), &e.train_queue_url)
        .export(
            &format!("{APP_STACK}-TrainDeadLetterQueueUrl"),
            &e.train_dlq_url,
        )
        .export(
            &format!("{APP_STACK}-WebhookQueueUrl"),
            &e.webhook_queue_url,
        )
        .export(
            &format!("{APP_STACK}-WebhookDeadLetterQueueUrl"),
            &e.webhook_dlq_url,
        )
        .export(
            &format!("{APP_STACK}-WebhookQueueArn"),
            access::queue_arn(&e.webhook_queue_url),
        )
        .for_template(&load("infra/fargate.yaml"));
    (app, bridge)
}

/// Every principal's policy: each Lambda function of template.yaml (by logical id) and the bridge's
/// task role.
pub fn roles(app: &Stack, bridge: &Stack) -> BTreeMap<String, Policy> {
    let mut out = BTreeMap::new();
    let template = load("template.yaml");
    for (id, resource) in template["Resources"].as_mapping().expect("Resources") {
        if resource["Type"] != "AWS::Serverless::Function" {
            continue;
        }
        let id = id.as_str().unwrap().to_string();
        let mut documents = Vec::new();
        for policy in resource["Properties"]
            .get("Policies")
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
        {
            documents.extend(function_policy(app, &id, policy));
        }
        out.insert(id, Policy::from_documents(&documents));
    }
    let fargate = load("infra/fargate.yaml");
    let task = &fargate["Resources"]["TaskRole"]["Properties"];
    assert!(
        task.get("ManagedPolicyArns").is_none(),
        "the IAM harness does not read managed policies of the task role"
    );
    let documents: Vec<Json> = task["Policies"]
        .as_sequence()
        .expect("the task role's policies")
        .iter()
        .filter_map(|p| bridge.eval(&p["PolicyDocument"]))
        .collect();
    out.insert(
        CALL_BRIDGE_TASK.to_string(),
        Policy::from_documents(&documents),
    );
    out
}

/// One entry of a SAM function's `Policies`: an inline document or a SAM policy template.
fn function_policy(stack: &Stack, id: &str, policy: &Value) -> Vec<Json> {
    if policy.get("Statement").is_some() {
        return stack.eval(policy).into_iter().collect();
    }
    let Some(mapping) = policy.as_mapping().filter(|m| m.len() == 1) else {
        panic!("{id}: the IAM harness cannot read the policy {policy:?} (a managed policy?)");
    };
    let (name, parameters) = mapping.iter().next().unwrap();
    let name = name.as_str().unwrap();
    let parameters = stack.eval(parameters).unwrap_or(Json::Null);
    let p = |key: &str| {
        parameters[key]
            .as_str()
            .unwrap_or_else(|| panic!("{id}: {name} without {key}"))
            .to_string()
    };
    let statement = |actions: &[&str], resources: Vec<String>| {
        json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": actions, "Resource": resources}
        ]})
    };
    let table = |t: String| {
        let arn = access::table_arn(&t);
        vec![arn.clone(), format!("{arn}/index/*")]
    };
    let bucket = |b: String| vec![format!("arn:aws:s3:::{b}"), format!("arn:aws:s3:::{b}/*")];
    // The statements of AWS SAM's policy templates (policy_templates.json).
    let document = match name {
        "DynamoDBCrudPolicy" => statement(
            &[
                "dynamodb:GetItem",
                "dynamodb:DeleteItem",
                "dynamodb:PutItem",
                "dynamodb:Scan",
                "dynamodb:Query",
                "dynamodb:UpdateItem",
                "dynamodb:BatchWriteItem",
                "dynamodb:BatchGetItem",
                "dynamodb:DescribeTable",
                "dynamodb:ConditionCheckItem",
            ],
            table(p("TableName")),
        ),
        "DynamoDBReadPolicy" => statement(
            &[
                "dynamodb:GetItem",
                "dynamodb:Scan",
                "dynamodb:Query",
                "dynamodb:BatchGetItem",
                "dynamodb:DescribeTable",
            ],
            table(p("TableName")),
        ),
        "DynamoDBWritePolicy" => statement(
            &[
                "dynamodb:PutItem",
                "dynamodb:UpdateItem",
                "dynamodb:BatchWriteItem",
            ],
            table(p("TableName")),
        ),
        "SQSSendMessagePolicy" => statement(
            &["sqs:SendMessage*"],
            vec![format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{}", p("QueueName"))],
        ),
        "SQSPollerPolicy" => statement(
            &[
                "sqs:ChangeMessageVisibility",
                "sqs:ChangeMessageVisibilityBatch",
                "sqs:DeleteMessage",
                "sqs:DeleteMessageBatch",
                "sqs:GetQueueAttributes",
                "sqs:ReceiveMessage",
            ],
            vec![format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{}", p("QueueName"))],
        ),
        "S3ReadPolicy" => statement(
            &[
                "s3:GetObject",
                "s3:ListBucket",
                "s3:GetBucketLocation",
                "s3:GetObjectVersion",
                "s3:GetLifecycleConfiguration",
            ],
            bucket(p("BucketName")),
        ),
        "S3WritePolicy" => statement(
            &[
                "s3:PutObject",
                "s3:PutObjectAcl",
                "s3:PutLifecycleConfiguration",
            ],
            bucket(p("BucketName")),
        ),
        "S3CrudPolicy" => statement(
            &[
                "s3:GetObject",
                "s3:ListBucket",
                "s3:GetBucketLocation",
                "s3:GetObjectVersion",
                "s3:PutObject",
                "s3:PutObjectAcl",
                "s3:GetLifecycleConfiguration",
                "s3:PutLifecycleConfiguration",
                "s3:DeleteObject",
            ],
            bucket(p("BucketName")),
        ),
        "SESCrudPolicy" => statement(
            &[
                "ses:GetIdentityVerificationAttributes",
                "ses:SendEmail",
                "ses:SendRawEmail",
                "ses:VerifyEmailIdentity",
            ],
            vec![format!(
                "arn:aws:ses:{REGION}:{ACCOUNT}:identity/{}",
                p("IdentityName")
            )],
        ),
        "AWSSecretsManagerGetSecretValuePolicy" => {
            statement(&["secretsmanager:GetSecretValue"], vec![p("SecretArn")])
        }
        "LambdaInvokePolicy" => statement(
            &["lambda:InvokeFunction"],
            vec![format!(
                "arn:aws:lambda:{REGION}:{ACCOUNT}:function:{}*",
                p("FunctionName")
            )],
        ),
        other => panic!(
            "{id}: the IAM harness does not know the SAM policy template {other} \
             (add its statements to tests/support/iam/mod.rs)"
        ),
    };
    vec![document]
}

#[cfg(test)]
mod tests {
    use super::*;
    use policy::{Access, Decision};

    fn emulated() -> Emulated {
        Emulated {
            table: "kotoba-t".into(),
            bucket: "kotoba-b".into(),
            train_queue_url: "http://127.0.0.1:5000/123456789012/train-q".into(),
            train_dlq_url: "http://127.0.0.1:5000/123456789012/train-q-dlq".into(),
            webhook_queue_url: "http://127.0.0.1:5000/123456789012/hooks-q".into(),
            webhook_dlq_url: "http://127.0.0.1:5000/123456789012/hooks-q-dlq".into(),
            deadline_function: "kotoba-test-deadline".into(),
            secrets: SecretArns::default(),
        }
    }

    #[test]
    fn every_function_and_the_bridge_task_have_a_role_from_the_templates() {
        let (app, bridge) = stacks(&emulated());
        let roles = roles(&app, &bridge);
        assert_eq!(roles.len(), 14, "{:?}", roles.keys());
        let table = access::table_arn("kotoba-t");
        let get = Access::new("dynamodb:GetItem", &table);
        for (id, policy) in &roles {
            if id != "ConsoleFunction" {
                assert!(
                    matches!(policy.decide(&get), Decision::Allowed { .. }),
                    "{id} cannot read the table"
                );
            }
        }
        assert_eq!(
            roles["ConsoleFunction"].decide(&get),
            Decision::ImplicitDeny,
            "the console touches nothing"
        );
        // Secrets: exactly the named ones.
        let chat = &roles["ChatFunction"];
        let read = |arn: &str| Access::new("secretsmanager:GetSecretValue", arn);
        assert!(matches!(
            chat.decide(&read(&SecretArns::default().openai)),
            Decision::Allowed { .. }
        ));
        assert_eq!(
            chat.decide(&read(&SecretArns::default().admin_key)),
            Decision::ImplicitDeny
        );
    }
}
