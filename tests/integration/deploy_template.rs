//! The deployed stack as written: template.yaml (SAM) and infra/fargate.yaml read as YAML, checked
//! against the code. Above all, each secret reaches exactly the functions whose code reads it (their
//! `SECRETS` constants, the only secrets `shared::secrets` lets a function's configuration hold): the
//! `<VARIABLE>_SECRET_ARN` variables, the `secretsmanager:GetSecretValue` grants and the ECS secrets
//! must all name the same set, and no secret is ever a plain environment variable.

use std::collections::{BTreeMap, BTreeSet};

use serde_norway::{Mapping, Value};
use shared::secrets::{ARN_SUFFIX, SECRET_VARIABLES};

fn load(relative: &str) -> Value {
    let path = format!("{}/../{relative}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("parsing {path}: {e}"))
}

fn get<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, key| v.get(*key))
}

fn mapping<'a>(value: &'a Value, path: &[&str]) -> &'a Mapping {
    get(value, path)
        .and_then(Value::as_mapping)
        .unwrap_or_else(|| panic!("{} is not a mapping", path.join(".")))
}

/// The logical id a value points at: `!Ref X`, `!GetAtt X.Attr`, or the first branch of
/// `!If [cond, value, AWS::NoValue]` (the only conditional shape the templates use for secrets).
fn target(value: &Value) -> Option<String> {
    match value {
        Value::Tagged(tagged) => match tagged.tag.to_string().as_str() {
            "!Ref" => tagged.value.as_str().map(str::to_string),
            "!GetAtt" => tagged
                .value
                .as_str()
                .and_then(|s| s.split('.').next())
                .map(str::to_string),
            "!If" => tagged
                .value
                .as_sequence()
                .and_then(|branches| branches.get(1))
                .and_then(target),
            _ => None,
        },
        _ => None,
    }
}

/// Every statement of a function's inline policies (a `!If` statement counts as its first branch).
fn statements(policies: Option<&Value>) -> Vec<Value> {
    let mut out = Vec::new();
    for policy in policies.and_then(Value::as_sequence).into_iter().flatten() {
        for statement in policy
            .get("Statement")
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
        {
            match statement {
                Value::Tagged(t) if t.tag == "!If" => {
                    if let Some(first) = t.value.as_sequence().and_then(|b| b.get(1)) {
                        out.push(first.clone());
                    }
                }
                other => out.push(other.clone()),
            }
        }
    }
    out
}

fn actions(statement: &Value) -> Vec<String> {
    match statement.get("Action") {
        Some(Value::String(a)) => vec![a.clone()],
        Some(Value::Sequence(all)) => all
            .iter()
            .filter_map(|a| a.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

/// The resources a function may read secrets from (logical ids / parameter names).
fn secret_grants(statements: &[Value]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for s in statements {
        if actions(s).iter().any(|a| a.starts_with("secretsmanager:")) {
            match s.get("Resource") {
                Some(Value::Sequence(all)) => out.extend(all.iter().filter_map(target)),
                Some(one) => out.extend(target(one)),
                None => panic!("a secrets statement without a resource"),
            }
        }
    }
    out
}

fn env_names(vars: Option<&Value>) -> BTreeMap<String, Value> {
    vars.and_then(Value::as_mapping)
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.as_str().expect("variable name").to_string(), v.clone()))
        .collect()
}

/// Every Lambda function of the SAM template: logical id → binary name.
fn functions(template: &Value) -> BTreeMap<String, String> {
    mapping(template, &["Resources"])
        .iter()
        .filter(|(_, r)| r.get("Type").and_then(Value::as_str) == Some("AWS::Serverless::Function"))
        .map(|(id, r)| {
            let binary = get(r, &["Metadata", "BuildProperties", "Binary"])
                .and_then(Value::as_str)
                .expect("every function names its binary");
            (id.as_str().unwrap().to_string(), binary.to_string())
        })
        .collect()
}

/// What each binary's code reads.
fn reads(binary: &str) -> BTreeSet<String> {
    let list: &[&str] = match binary {
        "management" => management::SECRETS,
        "usage" => usage::SECRETS,
        "credits" => credits::SECRETS,
        "chat" => chat::SECRETS,
        "train" => train::SECRETS,
        "train-worker" => train_worker::SECRETS,
        "embed-script" => embed_script::SECRETS,
        "call-bridge" => call_bridge::SECRETS,
        "billing" => billing::SECRETS,
        "webhook" => webhook::SECRETS,
        "deadline-cron" => deadline_cron::SECRETS,
        "webhook-worker" => webhook_worker::SECRETS,
        "console" => console::SECRETS,
        other => panic!("template builds an unknown binary {other}"),
    };
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn every_secret_reaches_exactly_the_lambda_functions_whose_code_reads_it() {
    let template = load("template.yaml");
    let globals = env_names(get(
        &template,
        &["Globals", "Function", "Environment", "Variables"],
    ));
    for name in globals.keys() {
        assert!(
            !SECRET_VARIABLES.contains(&name.as_str()) && !name.ends_with(ARN_SUFFIX),
            "Globals hand {name} to every function"
        );
    }
    let resources = mapping(&template, &["Resources"]);
    let functions = functions(&template);
    assert_eq!(functions.len(), 13, "{functions:?}");
    let mut readers: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (id, binary) in &functions {
        let properties = &resources[id.as_str()]["Properties"];
        let env = env_names(get(properties, &["Environment", "Variables"]));
        let mut given = BTreeSet::new();
        let mut env_targets = BTreeSet::new();
        for (name, value) in &env {
            assert!(
                !SECRET_VARIABLES.contains(&name.as_str()),
                "{id} has the secret {name} in its plain environment"
            );
            if let Some(variable) = name.strip_suffix(ARN_SUFFIX) {
                assert!(
                    SECRET_VARIABLES.contains(&variable),
                    "{id}: {name} names no known secret"
                );
                given.insert(variable.to_string());
                env_targets.insert(target(value).unwrap_or_else(|| panic!("{id}: {name}")));
            }
        }
        assert_eq!(
            given,
            reads(binary),
            "{id} ({binary}) must be given exactly the secrets its code reads"
        );
        let grants = secret_grants(&statements(properties.get("Policies")));
        assert_eq!(
            grants, env_targets,
            "{id}: the secrets it may read are exactly the ones it is told about"
        );
        for variable in given {
            readers.entry(variable).or_default().insert(id.clone());
        }
    }
    // The public functions hold no secret at all.
    for public in ["EmbedScriptFunction", "TrainFunction", "ConsoleFunction"] {
        assert!(
            readers.values().all(|ids| !ids.contains(public)),
            "{public} holds a secret: {readers:?}"
        );
    }
    assert_eq!(
        readers["KOTOBA_ADMIN_KEY"],
        BTreeSet::from([
            "CreditsFunction".to_string(),
            "ManagementFunction".to_string(),
            "UsageFunction".to_string()
        ])
    );
    assert_eq!(
        readers["OPENAI_API_KEY"],
        BTreeSet::from(
            ["ChatFunction", "ChatStreamFunction", "TrainWorkerFunction"].map(String::from)
        )
    );
    // Nothing else in the stack may read a secret either.
    for (id, resource) in resources {
        if resource.get("Type").and_then(Value::as_str) == Some("AWS::IAM::Policy") {
            let statements = statements(Some(&Value::Sequence(vec![
                resource["Properties"]["PolicyDocument"].clone(),
            ])));
            assert!(
                secret_grants(&statements).is_empty(),
                "{id:?} grants secrets"
            );
        }
    }
}

#[test]
fn the_call_bridge_task_gets_exactly_the_secrets_the_bridge_reads() {
    let template = load("infra/fargate.yaml");
    let resources = mapping(&template, &["Resources"]);
    let containers = get(
        &template,
        &[
            "Resources",
            "TaskDefinition",
            "Properties",
            "ContainerDefinitions",
        ],
    )
    .and_then(Value::as_sequence)
    .expect("containers");
    assert_eq!(containers.len(), 1);
    let container = &containers[0];
    let mut injected = BTreeSet::new();
    let mut sources = BTreeSet::new();
    for secret in container["Secrets"].as_sequence().expect("Secrets") {
        injected.insert(secret["Name"].as_str().unwrap().to_string());
        sources.insert(target(&secret["ValueFrom"]).expect("ValueFrom is a parameter"));
    }
    assert_eq!(injected, reads("call-bridge"));
    for variable in container["Environment"].as_sequence().expect("Environment") {
        let name = variable["Name"].as_str().unwrap();
        assert!(
            !SECRET_VARIABLES.contains(&name),
            "{name} in the bridge's plain environment"
        );
    }
    // Only the execution role (which injects them) may read the secrets, and only these.
    let mut granted = BTreeSet::new();
    for (id, resource) in resources {
        if resource.get("Type").and_then(Value::as_str) != Some("AWS::IAM::Role") {
            continue;
        }
        let docs: Vec<Value> = resource["Properties"]["Policies"]
            .as_sequence()
            .into_iter()
            .flatten()
            .map(|p| p["PolicyDocument"].clone())
            .collect();
        let grants = secret_grants(&statements(Some(&Value::Sequence(docs))));
        if id.as_str() == Some("ExecutionRole") {
            granted = grants;
        } else {
            assert!(grants.is_empty(), "{id:?} may read secrets");
        }
    }
    assert_eq!(granted, sources);
}

/// Every name a template's `!Ref`/`!Sub`/`!If` mentions.
fn mentions(value: &Value, out: &mut String) {
    match value {
        Value::String(s) => {
            out.push_str(s);
            out.push(' ');
        }
        Value::Sequence(all) => all.iter().for_each(|v| mentions(v, out)),
        Value::Mapping(m) => m.iter().for_each(|(k, v)| {
            mentions(k, out);
            mentions(v, out);
        }),
        Value::Tagged(t) => mentions(&t.value, out),
        _ => {}
    }
}

#[test]
fn every_parameter_is_used() {
    for file in ["template.yaml", "infra/fargate.yaml"] {
        let template = load(file);
        let mut used = String::new();
        for section in ["Conditions", "Globals", "Resources", "Outputs"] {
            if let Some(v) = template.get(section) {
                mentions(v, &mut used);
            }
        }
        for (name, _) in mapping(&template, &["Parameters"]) {
            let name = name.as_str().unwrap();
            let mentioned = used
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .any(|word| word == name);
            assert!(mentioned, "{file}: parameter {name} is never used");
        }
    }
}

#[test]
fn the_lambda_stack_is_operable() {
    let template = load("template.yaml");
    let resources = mapping(&template, &["Resources"]);
    let global_timeout = get(&template, &["Globals", "Function", "Timeout"])
        .and_then(Value::as_u64)
        .unwrap();
    let functions = functions(&template);
    for id in functions.keys() {
        let properties = &resources[id.as_str()]["Properties"];
        // Behind API Gateway an integration ends at 30 s: the function must stop first.
        let behind_api = properties
            .get("Events")
            .and_then(Value::as_mapping)
            .into_iter()
            .flatten()
            .any(|(_, e)| e["Type"].as_str() == Some("HttpApi"));
        let timeout = properties
            .get("Timeout")
            .and_then(Value::as_u64)
            .unwrap_or(global_timeout);
        if behind_api {
            assert!(
                timeout < 30,
                "{id} outlives API Gateway's 30 s ({timeout} s)"
            );
        }
        // Its own log group, with retention.
        let group = get(properties, &["LoggingConfig", "LogGroup"])
            .and_then(target)
            .unwrap_or_else(|| panic!("{id} has no log group"));
        assert_eq!(resources[group.as_str()]["Type"], "AWS::Logs::LogGroup");
        assert!(
            resources[group.as_str()]["Properties"]
                .get("RetentionInDays")
                .is_some(),
            "{group} keeps logs forever"
        );
        // Alarms on its errors and throttles.
        for metric in ["Errors", "Throttles"] {
            let alarmed = resources.iter().any(|(_, r)| {
                r["Type"] == "AWS::CloudWatch::Alarm"
                    && r["Properties"]["MetricName"] == metric
                    && r["Properties"]["Dimensions"][0]
                        .get("Value")
                        .and_then(target)
                        .as_deref()
                        == Some(id.as_str())
            });
            assert!(alarmed, "{id} has no {metric} alarm");
        }
    }
    let alarm_on = |namespace: &str, metric: &str| {
        resources.iter().any(|(_, r)| {
            r["Type"] == "AWS::CloudWatch::Alarm"
                && r["Properties"]["Namespace"] == namespace
                && r["Properties"]["MetricName"] == metric
        })
    };
    assert!(alarm_on("AWS/SQS", "ApproximateNumberOfMessagesVisible"));
    // Webhooks: a batch of deliveries per invocation, failures reported per message.
    let hooks =
        &resources["WebhookWorkerFunction"]["Properties"]["Events"]["WebhookQueue"]["Properties"];
    assert_eq!(hooks["FunctionResponseTypes"][0], "ReportBatchItemFailures");
    assert!(alarm_on("AWS/ApiGateway", "5xx"));
    // Data survives the stack.
    for id in [
        "Table",
        "Bucket",
        "TrainQueue",
        "TrainDeadLetterQueue",
        "WebhookQueue",
        "WebhookDeadLetterQueue",
        "WebhookKeySecret",
    ] {
        assert_eq!(resources[id]["DeletionPolicy"], "Retain", "{id}");
        assert_eq!(resources[id]["UpdateReplacePolicy"], "Retain", "{id}");
    }
    // Access logs carry the request id the functions return.
    let format = get(
        &resources["HttpApi"],
        &["Properties", "AccessLogSettings", "Format"],
    )
    .and_then(Value::as_str)
    .unwrap();
    assert!(format.contains("$context.requestId"));
    let line: serde_json::Value = serde_json::from_str(&format.replace('\n', " ")).unwrap();
    assert!(line.get("requestId").is_some());

    // Training: concurrency limited where SQS polls, not by throttling the function.
    let worker = &resources["TrainWorkerFunction"]["Properties"];
    assert!(worker.get("ReservedConcurrentExecutions").is_none());
    let event = &worker["Events"]["TrainQueue"]["Properties"];
    assert_eq!(
        target(&event["ScalingConfig"]["MaximumConcurrency"]).as_deref(),
        Some("TrainMaxConcurrency")
    );
    assert_eq!(event["BatchSize"], 1);

    // Streaming: the function URL takes only CloudFront's signed requests, has a concurrency cap, and
    // the embed script tells the widget where it is.
    let stream = &resources["ChatStreamFunction"]["Properties"];
    assert_eq!(stream["FunctionUrlConfig"]["AuthType"], "AWS_IAM");
    assert_eq!(stream["FunctionUrlConfig"]["InvokeMode"], "RESPONSE_STREAM");
    assert!(stream.get("ReservedConcurrentExecutions").is_some());
    let principals: Vec<&Value> = resources
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::Lambda::Permission")
        .map(|(_, r)| &r["Properties"]["Principal"])
        .collect();
    assert!(principals.iter().all(|p| *p == "cloudfront.amazonaws.com"));
    assert_eq!(principals.len(), 2);
    let embed = env_names(get(
        &resources["EmbedScriptFunction"],
        &["Properties", "Environment", "Variables"],
    ));
    assert!(embed.contains_key(embed_script::STREAM_URL_VARIABLE));
}

#[test]
fn the_call_bridge_drains_in_the_order_ecs_stops_it() {
    let template = load("infra/fargate.yaml");
    let resources = mapping(&template, &["Resources"]);
    let drain_max = get(&template, &["Parameters", "DrainSeconds", "MaxValue"])
        .and_then(Value::as_u64)
        .unwrap();
    let container = &resources["TaskDefinition"]["Properties"]["ContainerDefinitions"][0];
    let stop_timeout = container["StopTimeout"].as_u64().unwrap();
    // After SIGTERM: the drain deadline, then time for ended calls to log, before SIGKILL.
    assert!(
        drain_max + call_bridge::FINISH_GRACE.as_secs() <= stop_timeout,
        "{drain_max} + {:?} > {stop_timeout}",
        call_bridge::FINISH_GRACE
    );
    assert!(stop_timeout <= 120, "Fargate's most");
    // Before SIGTERM: the deregistration delay, during which calls keep flowing; it is the drain.
    let attributes = resources["TargetGroup"]["Properties"]["TargetGroupAttributes"]
        .as_sequence()
        .unwrap();
    let delay = attributes
        .iter()
        .find(|a| a["Key"] == "deregistration_delay.timeout_seconds")
        .expect("a deregistration delay");
    assert_eq!(target(&delay["Value"]).as_deref(), Some("DrainSeconds"));
    let env: BTreeMap<&str, &Value> = container["Environment"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| (v["Name"].as_str().unwrap(), &v["Value"]))
        .collect();
    assert_eq!(
        target(env["KOTOBA_BRIDGE_DRAIN_SECONDS"]).as_deref(),
        Some("DrainSeconds")
    );
    assert!(
        env.contains_key("KOTOBA_CHAT_MODEL"),
        "call summaries need a model"
    );
    // The image and the task agree on the architecture the README builds for.
    assert_eq!(
        template["Parameters"]["CpuArchitecture"]["Default"],
        "ARM64"
    );
    let readme =
        std::fs::read_to_string(format!("{}/../docs/deploy.md", env!("CARGO_MANIFEST_DIR")))
            .unwrap();
    assert!(readme.contains("--platform linux/arm64"));
    // Autoscaling tracks CPU and the active calls the bridge logs.
    let policies: Vec<&Value> = resources
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::ApplicationAutoScaling::ScalingPolicy")
        .map(|(_, r)| &r["Properties"]["TargetTrackingScalingPolicyConfiguration"])
        .collect();
    assert!(policies.iter().any(
        |p| p["PredefinedMetricSpecification"]["PredefinedMetricType"]
            == "ECSServiceAverageCPUUtilization"
    ));
    assert!(
        policies
            .iter()
            .any(|p| p["CustomizedMetricSpecification"]["MetricName"] == "ActiveCalls")
    );
    let filter = &resources["ActiveCallsMetricFilter"]["Properties"];
    assert_eq!(
        filter["FilterPattern"],
        format!("{{ $.message = \"{}\" }}", call_bridge::LOAD_MESSAGE)
    );
    assert_eq!(
        filter["MetricTransformations"][0]["MetricValue"],
        "$.active_calls"
    );
}

/// `make package` (infra/dev/package) builds what the template deploys: every function through SAM's
/// cargo-lambda workflow from the workspace root, as a `bootstrap` for arm64 on provided.al2023, from a
/// binary the workspace defines. The arm64 build itself is too slow for `make test`; this keeps its inputs
/// in step.
#[test]
fn every_function_is_built_as_make_package_builds_it() {
    let template = load("template.yaml");
    let globals = get(&template, &["Globals", "Function"]).expect("Globals.Function");
    let resources = mapping(&template, &["Resources"]);
    for (id, binary) in functions(&template) {
        let function = &resources[id.as_str()];
        let property = |name: &str| {
            function["Properties"]
                .get(name)
                .or_else(|| globals.get(name))
                .cloned()
                .unwrap_or_else(|| panic!("{id}: no {name}"))
        };
        assert_eq!(
            property("Architectures"),
            serde_norway::from_str::<Value>("[arm64]").unwrap(),
            "{id}"
        );
        assert_eq!(property("Runtime"), "provided.al2023", "{id}");
        assert_eq!(property("Handler"), "bootstrap", "{id}");
        assert_eq!(
            property("CodeUri"),
            ".",
            "{id}: cargo-lambda builds from the workspace root"
        );
        assert_eq!(
            function["Metadata"]["BuildMethod"], "rust-cargolambda",
            "{id}: sam build must run cargo-lambda"
        );
        let manifest = format!(
            "{}/../functions/{binary}/Cargo.toml",
            env!("CARGO_MANIFEST_DIR")
        );
        let manifest = std::fs::read_to_string(&manifest)
            .unwrap_or_else(|e| panic!("{id}: binary {binary} has no crate ({manifest}: {e})"));
        // An explicit `[[bin]]`, or the package's own `src/main.rs` (named after the package).
        let main_rs = format!(
            "{}/../functions/{binary}/src/main.rs",
            env!("CARGO_MANIFEST_DIR")
        );
        assert!(
            manifest.contains(&format!("[[bin]]\nname = \"{binary}\""))
                || (manifest.starts_with(&format!("[package]\nname = \"{binary}\""))
                    && std::path::Path::new(&main_rs).exists()),
            "{id}: functions/{binary} defines no binary {binary}"
        );
    }
    let root = format!("{}/..", env!("CARGO_MANIFEST_DIR"));
    let script = std::fs::read_to_string(format!("{root}/infra/dev/package")).unwrap();
    assert!(script.contains("sam build --beta-features --template-file template.yaml"));
    assert!(
        script.contains("*\"ARM aarch64\"*"),
        "the script checks what it built"
    );
    // `make package` runs it; `make test` does not.
    let makefile = std::fs::read_to_string(format!("{root}/Makefile")).unwrap();
    let recipe = |target: &str| {
        let start = makefile
            .find(&format!("\n{target}:\n"))
            .unwrap_or_else(|| panic!("Makefile has no {target} target"));
        makefile[start + target.len() + 3..]
            .lines()
            .take_while(|l| l.starts_with('\t'))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(recipe("package").trim(), "infra/dev/package");
    assert!(!recipe("test").contains("package"));
}

/// What an alarm notifies: `!If [Notify, [!If [HasAlarmTopic, !Ref AlarmTopicArn, !Ref AlarmTopic]], …]`.
fn notifies_the_alarm_topic(alarm: &Value) -> bool {
    ["AlarmActions", "OKActions"].iter().all(|actions| {
        let Some(Value::Tagged(t)) = alarm["Properties"].get(*actions) else {
            return false;
        };
        let text = format!("{:?}", t.value);
        t.tag == "!If"
            && t.value[0] == "Notify"
            && text.contains("AlarmTopicArn")
            && text.contains("AlarmTopic")
    })
}

fn alarms(resources: &Mapping) -> Vec<(&str, &Value)> {
    resources
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::CloudWatch::Alarm")
        .map(|(id, r)| (id.as_str().unwrap(), r))
        .collect()
}

#[test]
fn alarms_reach_someone_and_cover_what_an_operator_must_know() {
    let template = load("template.yaml");
    let resources = mapping(&template, &["Resources"]);
    let all = alarms(resources);
    for (id, alarm) in &all {
        assert!(notifies_the_alarm_topic(alarm), "{id} notifies no one");
    }
    // Given an address and no topic, the stack makes the topic and subscribes it.
    let topic = &resources["AlarmTopic"];
    assert_eq!(topic["Type"], "AWS::SNS::Topic");
    assert_eq!(topic["Condition"], "CreateAlarmTopic");
    assert_eq!(topic["Properties"]["Subscription"][0]["Protocol"], "email");
    assert_eq!(
        target(&topic["Properties"]["Subscription"][0]["Endpoint"]).as_deref(),
        Some("AlarmEmail")
    );
    let on = |namespace: &str, metric: &str| {
        all.iter().any(|(_, a)| {
            let p = &a["Properties"];
            (p["Namespace"] == namespace && p["MetricName"] == metric)
                || p["Metrics"].as_sequence().is_some_and(|ms| {
                    ms.iter().any(|m| {
                        m["MetricStat"]["Metric"]["Namespace"] == namespace
                            && m["MetricStat"]["Metric"]["MetricName"] == metric
                    })
                })
        })
    };
    for (namespace, metric) in [
        ("AWS/CloudFront", "5xxErrorRate"),
        ("AWS/Lambda", "Url5xxCount"),
        ("AWS/DynamoDB", "ReadThrottleEvents"),
        ("AWS/DynamoDB", "WriteThrottleEvents"),
        ("AWS/SES", "Reputation.BounceRate"),
        ("AWS/SES", "Reputation.ComplaintRate"),
    ] {
        assert!(on(namespace, metric), "no alarm on {namespace} {metric}");
    }
    // Queue age on both queues.
    for queue in ["TrainQueue", "WebhookQueue"] {
        assert!(
            all.iter().any(|(_, a)| {
                a["Properties"]["MetricName"] == "ApproximateAgeOfOldestMessage"
                    && target(&a["Properties"]["Dimensions"][0]["Value"]).as_deref() == Some(queue)
            }),
            "no age alarm on {queue}"
        );
    }
    // `alert = true` lines: a filter on every function's log group, one alarm on their metric.
    let functions = functions(&template);
    let filtered: BTreeSet<String> = resources
        .iter()
        .filter(|(_, r)| {
            r["Type"] == "AWS::Logs::MetricFilter"
                && r["Properties"]["FilterPattern"] == "{ $.alert IS TRUE }"
                && r["Properties"]["MetricTransformations"][0]["MetricName"] == "Alerts"
        })
        .filter_map(|(_, r)| target(&r["Properties"]["LogGroupName"]))
        .collect();
    for id in functions.keys() {
        let group = get(
            &resources[id.as_str()],
            &["Properties", "LoggingConfig", "LogGroup"],
        )
        .and_then(target)
        .unwrap();
        assert!(
            filtered.contains(&group),
            "{id}'s alert lines are not counted"
        );
    }
    assert!(
        all.iter()
            .any(|(_, a)| a["Properties"]["MetricName"] == "Alerts")
    );
    // Duration near each function's timeout: 90 % of it, in milliseconds.
    let global_timeout = template["Globals"]["Function"]["Timeout"].as_u64().unwrap();
    for id in functions.keys() {
        let timeout = resources[id.as_str()]["Properties"]
            .get("Timeout")
            .and_then(Value::as_u64)
            .unwrap_or(global_timeout);
        let alarm = all
            .iter()
            .find(|(_, a)| {
                a["Properties"]["MetricName"] == "Duration"
                    && target(&a["Properties"]["Dimensions"][0]["Value"]).as_deref()
                        == Some(id.as_str())
            })
            .unwrap_or_else(|| panic!("{id} has no duration alarm"));
        assert_eq!(
            alarm.1["Properties"]["Threshold"].as_u64(),
            Some(timeout * 900),
            "{id}"
        );
    }
}

#[test]
fn one_dashboard_shows_stages_errors_queues_calls_and_credits() {
    let template = load("template.yaml");
    let resources = mapping(&template, &["Resources"]);
    let dashboards: Vec<&Value> = resources
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::CloudWatch::Dashboard")
        .map(|(_, r)| r)
        .collect();
    assert_eq!(dashboards.len(), 1);
    let Value::Tagged(body) = &dashboards[0]["Properties"]["DashboardBody"] else {
        panic!("the body is a !Sub");
    };
    assert_eq!(body.tag, "!Sub");
    // The body is JSON once substituted: every ${…} is a name the stack has.
    let text = body.value.as_str().unwrap();
    let substituted = text
        .split("${")
        .enumerate()
        .map(|(i, part)| {
            if i == 0 {
                part.to_string()
            } else {
                let (name, rest) = part.split_once('}').unwrap();
                let known = name.starts_with("AWS::")
                    || template["Parameters"].get(name).is_some()
                    || resources.get(name.split('.').next().unwrap()).is_some();
                assert!(known, "the dashboard names {name}, which the stack lacks");
                format!("x{rest}")
            }
        })
        .collect::<String>();
    let json: serde_json::Value = serde_json::from_str(&substituted).expect("dashboard JSON");
    let titles: Vec<&str> = json["widgets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["properties"]["title"].as_str().unwrap())
        .collect();
    let metrics = text;
    for metric in [
        "ChatFirstByteMs",
        "ChatTotalMs",
        "\"Errors\"",
        "ApproximateAgeOfOldestMessage",
        "ApproximateNumberOfMessagesVisible",
        "ActiveCalls",
        "CreditsSpent",
    ] {
        assert!(
            metrics.contains(metric),
            "the dashboard lacks {metric}: {titles:?}"
        );
    }
    // The chat stages it graphs are the ones the chat function writes.
    for stage in shared::chat::timings::Stage::ALL {
        assert!(metrics.contains(stage.metric()), "{}", stage.metric());
    }
    // Every function's errors.
    for id in functions(&template).keys() {
        assert!(metrics.contains(&format!("${{{id}}}")), "{id}'s errors");
    }
    // Credits spent comes from a metric filter on the settle line.
    assert!(resources.iter().any(|(_, r)| {
        r["Type"] == "AWS::Logs::MetricFilter"
            && r["Properties"]["MetricTransformations"][0]["MetricName"] == "CreditsSpent"
            && r["Properties"]["FilterPattern"]
                == format!("{{ $.message = \"{}\" }}", shared::credits::SETTLED_MESSAGE)
    }));
}

#[test]
fn queues_and_concurrency_fit_a_new_account_and_a_flood() {
    let template = load("template.yaml");
    let resources = mapping(&template, &["Resources"]);
    // SQS event sources: visibility at least six times the worker's timeout; concurrency capped where
    // SQS polls.
    for (function, queue, event) in [
        ("WebhookWorkerFunction", "WebhookQueue", "WebhookQueue"),
        ("TrainWorkerFunction", "TrainQueue", "TrainQueue"),
    ] {
        let timeout = resources[function]["Properties"]["Timeout"]
            .as_u64()
            .unwrap();
        let visibility = resources[queue]["Properties"]["VisibilityTimeout"]
            .as_u64()
            .unwrap();
        assert!(
            visibility >= 6 * timeout,
            "{queue}: {visibility} < 6 × {timeout}"
        );
        let source = &resources[function]["Properties"]["Events"][event]["Properties"];
        assert!(
            source["ScalingConfig"]["MaximumConcurrency"] != Value::Null,
            "{function} has no MaximumConcurrency"
        );
    }
    // Reservations are parameters whose default (0: none) deploys on a new account; set, they cap.
    for (function, parameter) in [
        ("ChatFunction", "ChatConcurrency"),
        ("ChatStreamFunction", "ChatStreamConcurrency"),
    ] {
        assert_eq!(
            template["Parameters"][parameter]["Default"], 0,
            "{parameter}"
        );
        let Value::Tagged(reserved) =
            &resources[function]["Properties"]["ReservedConcurrentExecutions"]
        else {
            panic!("{function} has no reservation");
        };
        assert_eq!(reserved.tag, "!If");
        assert_eq!(target(&reserved.value[1]).as_deref(), Some(parameter));
    }
    // The schedule's failures land in a dead-letter queue, and so do the function's own.
    let schedule = &resources["DeadlineSchedule"]["Properties"]["Target"];
    assert_eq!(
        target(&schedule["DeadLetterConfig"]["Arn"]).as_deref(),
        Some("DeadlineDeadLetterQueue")
    );
    let invoke = &resources["DeadlineCronInvokeConfig"]["Properties"];
    assert_eq!(
        target(&invoke["DestinationConfig"]["OnFailure"]["Destination"]).as_deref(),
        Some("DeadlineDeadLetterQueue")
    );
    // With Stripe, PublicUrl is required (a rule CloudFormation checks before deploying).
    let rule = &template["Rules"]["PublicUrlWithStripe"];
    assert!(format!("{:?}", rule["RuleCondition"]).contains("StripeSecretKeySecretArn"));
    assert!(format!("{:?}", rule["Assertions"]).contains("PublicUrl"));
}

#[test]
fn the_call_bridge_stack_alarms_on_the_same_topic() {
    let template = load("infra/fargate.yaml");
    let resources = mapping(&template, &["Resources"]);
    let all = alarms(resources);
    for (id, alarm) in &all {
        assert!(notifies_the_alarm_topic(alarm), "{id} notifies no one");
    }
    let metric = |a: &Value| {
        let p = &a["Properties"];
        p["MetricName"]
            .as_str()
            .map(str::to_string)
            .or_else(|| {
                p["Metrics"].as_sequence().and_then(|ms| {
                    ms.iter()
                        .find_map(|m| m["MetricStat"]["Metric"]["MetricName"].as_str())
                        .map(str::to_string)
                })
            })
            .unwrap_or_default()
    };
    let covered: BTreeSet<String> = all.iter().map(|(_, a)| metric(a)).collect();
    for needed in [
        "UnHealthyHostCount",
        "HTTPCode_Target_5XX_Count",
        "RunningTaskCount",
        "CPUUtilization",
        "MemoryUtilization",
        "ActiveCalls",
    ] {
        assert!(
            covered.contains(needed),
            "no bridge alarm on {needed}: {covered:?}"
        );
    }
    assert_eq!(resources["AlarmTopic"]["Condition"], "CreateAlarmTopic");
    // The bridge counts callers behind the balancer, and protects itself from scale-in with its role.
    let container = &resources["TaskDefinition"]["Properties"]["ContainerDefinitions"][0];
    assert!(
        container["Environment"]
            .as_sequence()
            .unwrap()
            .iter()
            .any(|v| v["Name"] == "KOTOBA_BRIDGE_TRUST_FORWARDED_FOR" && v["Value"] == "true")
    );
    let task_policies = format!("{:?}", resources["TaskRole"]["Properties"]["Policies"]);
    assert!(task_policies.contains("ecs:UpdateTaskProtection"));
}

/// The bridge's image is cross-compiled with the pinned toolchain and a profile whose panics unwind
/// (one call's bug must not abort the task's other calls).
#[test]
fn the_bridge_image_is_cross_compiled_and_unwinds() {
    let root = format!("{}/..", env!("CARGO_MANIFEST_DIR"));
    let dockerfile =
        std::fs::read_to_string(format!("{root}/infra/call-bridge/Dockerfile")).unwrap();
    assert!(
        dockerfile.contains("FROM --platform=$BUILDPLATFORM"),
        "built natively, no QEMU"
    );
    assert!(dockerfile.contains("COPY rust-toolchain.toml"));
    assert!(
        !dockerfile.contains("RUST_VERSION"),
        "the toolchain comes from rust-toolchain.toml"
    );
    assert!(dockerfile.contains("cargo zigbuild --profile bridge"));
    let manifest: toml_like::Manifest = toml_like::read(&format!("{root}/Cargo.toml"));
    assert_eq!(manifest.get("profile.bridge", "panic"), Some("\"unwind\""));
    assert_eq!(
        manifest.get("profile.bridge", "inherits"),
        Some("\"release\"")
    );
}

/// Just enough of Cargo.toml: `key = value` lines under `[section]` headers.
mod toml_like {
    pub struct Manifest(Vec<(String, String, String)>);

    pub fn read(path: &str) -> Manifest {
        let text = std::fs::read_to_string(path).unwrap();
        let mut section = String::new();
        let mut out = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = name.to_string();
            } else if let Some((k, v)) = line.split_once('=')
                && !line.starts_with('#')
            {
                out.push((section.clone(), k.trim().to_string(), v.trim().to_string()));
            }
        }
        Manifest(out)
    }

    impl Manifest {
        pub fn get(&self, section: &str, key: &str) -> Option<&str> {
            self.0
                .iter()
                .find(|(s, k, _)| s == section && k == key)
                .map(|(_, _, v)| v.as_str())
        }
    }
}
