//! Which IAM actions on which resources an AWS API request needs, as AWS's Service Authorization
//! Reference says (not as moto checks them: moto authorizes a DynamoDB transaction as one
//! `dynamodb:TransactWriteItems` action on `*`, where AWS checks each item's Put/Update/Delete/
//! ConditionCheck on its table). An operation the harness does not know is refused, naming itself, so a
//! new SDK call is added here before any test can pass with it.

use axum::http::{HeaderMap, Method};
use serde_json::Value as Json;

use super::cfn::{ACCOUNT, REGION};
use super::policy::Access;

/// Who signed a request and for which service (from the SigV4 credential scope).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signer {
    pub access_key: String,
    pub service: String,
}

/// The signer of a request: its `Authorization` header, a presigned URL's `X-Amz-Credential`, or a
/// browser-form POST's `x-amz-credential` field.
pub fn signer(headers: &HeaderMap, query: &str, body: &[u8]) -> Option<Signer> {
    let scope = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|a| a.split("Credential=").nth(1))
        .map(|c| c.split(',').next().unwrap_or_default().to_string())
        .or_else(|| query_param(query, "X-Amz-Credential"))
        .or_else(|| form_fields(headers, body).and_then(|f| field(&f, "x-amz-credential")))?;
    let parts: Vec<&str> = scope.split('/').collect();
    (parts.len() >= 4).then(|| Signer {
        access_key: parts[0].to_string(),
        service: parts[3].to_string(),
    })
}

fn query_param(query: &str, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.into_owned())
}

fn has_param(query: &str, name: &str) -> bool {
    url::form_urlencoded::parse(query.as_bytes()).any(|(k, _)| k == name)
}

/// The fields of a `multipart/form-data` body (S3's browser-form upload).
fn form_fields(headers: &HeaderMap, body: &[u8]) -> Option<Vec<(String, Vec<u8>)>> {
    let content_type = headers.get("content-type")?.to_str().ok()?;
    let boundary = content_type
        .strip_prefix("multipart/form-data")?
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))?
        .trim_matches('"');
    let delimiter = format!("--{boundary}");
    let text = body;
    let mut fields = Vec::new();
    let mut parts = split_bytes(text, delimiter.as_bytes());
    parts.remove(0);
    for part in parts {
        let part = part.strip_prefix(b"\r\n").unwrap_or(part);
        if part.starts_with(b"--") {
            break;
        }
        let Some(split) = find(part, b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&part[..split]);
        let mut value = &part[split + 4..];
        value = value.strip_suffix(b"\r\n").unwrap_or(value);
        let name = head
            .split(';')
            .find_map(|p| p.trim().strip_prefix("name="))
            .map(|n| n.trim_matches('"').to_string());
        if let Some(name) = name {
            fields.push((name, value.to_vec()));
        }
    }
    Some(fields)
}

fn field(fields: &[(String, Vec<u8>)], name: &str) -> Option<String> {
    fields
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn split_bytes<'a>(mut haystack: &'a [u8], needle: &[u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    while let Some(i) = find(haystack, needle) {
        out.push(&haystack[..i]);
        haystack = &haystack[i + needle.len()..];
    }
    out.push(haystack);
    out
}

pub fn table_arn(table: &str) -> String {
    if table.starts_with("arn:") {
        table.to_string()
    } else {
        format!("arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{table}")
    }
}

pub fn queue_arn(queue_url_or_name: &str) -> String {
    let name = queue_url_or_name
        .rsplit('/')
        .next()
        .unwrap_or(queue_url_or_name);
    format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{name}")
}

pub fn function_arn(name: &str) -> String {
    if name.starts_with("arn:") {
        name.to_string()
    } else {
        format!("arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}")
    }
}

/// The accesses a request needs, or why the harness cannot say.
pub fn accesses(
    service: &str,
    method: &Method,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Vec<Access>, String> {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let json = || serde_json::from_slice::<Json>(body).unwrap_or(Json::Null);
    match service {
        "dynamodb" => dynamodb(target.split('.').nth(1).unwrap_or_default(), &json()),
        "sqs" => {
            if let Some(op) = target.strip_prefix("AmazonSQS.") {
                let body = json();
                let queue = body["QueueUrl"]
                    .as_str()
                    .or(body["QueueName"].as_str())
                    .unwrap_or("*");
                Ok(vec![Access::new(sqs_action(op), queue_arn(queue))])
            } else {
                // The query protocol: Action=…&QueueUrl=… in the form body (or the query string).
                let form = String::from_utf8_lossy(body);
                let form = if form.is_empty() {
                    query.to_string()
                } else {
                    form.into_owned()
                };
                let op = query_param(&form, "Action").ok_or("an SQS request without Action")?;
                let queue = query_param(&form, "QueueUrl")
                    .or_else(|| query_param(&form, "QueueName"))
                    .unwrap_or_else(|| "*".into());
                Ok(vec![Access::new(sqs_action(&op), queue_arn(&queue))])
            }
        }
        "secretsmanager" => {
            let op = target
                .strip_prefix("secretsmanager.")
                .ok_or("a Secrets Manager request without its target")?;
            let secret = json()["SecretId"].as_str().unwrap_or("*").to_string();
            let resource = if secret.starts_with("arn:") {
                secret
            } else {
                format!("arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{secret}")
            };
            Ok(vec![Access::new(format!("secretsmanager:{op}"), resource)])
        }
        "ses" => ses(method, path, &json()),
        "s3" => s3(method, path, query, headers, body),
        "lambda" => {
            let name = path
                .strip_prefix("/2015-03-31/functions/")
                .and_then(|rest| rest.strip_suffix("/invocations"))
                .filter(|_| method == Method::POST)
                .ok_or_else(|| format!("Lambda {method} {path}"))?;
            let name = percent_decode(name);
            let name = name.split(':').next().unwrap_or(&name).to_string();
            Ok(vec![Access::new(
                "lambda:InvokeFunction",
                function_arn(&name),
            )])
        }
        other => Err(format!("a {other} request")),
    }
}

fn sqs_action(op: &str) -> String {
    let base = op.strip_suffix("Batch").unwrap_or(op);
    format!("sqs:{base}")
}

fn dynamodb(op: &str, body: &Json) -> Result<Vec<Access>, String> {
    let table = |v: &Json| {
        v["TableName"]
            .as_str()
            .map(table_arn)
            .ok_or_else(|| format!("dynamodb {op} without TableName"))
    };
    match op {
        "GetItem" | "PutItem" | "UpdateItem" | "DeleteItem" | "DescribeTable"
        | "DescribeTimeToLive" => Ok(vec![Access::new(format!("dynamodb:{op}"), table(body)?)]),
        "Query" | "Scan" => {
            let mut resource = table(body)?;
            if let Some(index) = body["IndexName"].as_str() {
                resource = format!("{resource}/index/{index}");
            }
            Ok(vec![Access::new(format!("dynamodb:{op}"), resource)])
        }
        "BatchGetItem" | "BatchWriteItem" => {
            let tables = body["RequestItems"]
                .as_object()
                .ok_or_else(|| format!("dynamodb {op} without RequestItems"))?;
            Ok(tables
                .keys()
                .map(|t| Access::new(format!("dynamodb:{op}"), table_arn(t)))
                .collect())
        }
        "TransactWriteItems" | "TransactGetItems" => {
            let items = body["TransactItems"]
                .as_array()
                .ok_or_else(|| format!("dynamodb {op} without TransactItems"))?;
            let mut out = Vec::new();
            for item in items {
                let (kind, inner) = item
                    .as_object()
                    .and_then(|o| o.iter().next())
                    .ok_or("an empty transaction item")?;
                let action = match kind.as_str() {
                    "Put" => "dynamodb:PutItem",
                    "Update" => "dynamodb:UpdateItem",
                    "Delete" => "dynamodb:DeleteItem",
                    "ConditionCheck" => "dynamodb:ConditionCheckItem",
                    "Get" => "dynamodb:GetItem",
                    other => return Err(format!("transaction item {other}")),
                };
                out.push(Access::new(action, table(inner)?));
            }
            Ok(out)
        }
        other => Err(format!("dynamodb {other}")),
    }
}

fn ses(method: &Method, path: &str, body: &Json) -> Result<Vec<Access>, String> {
    if method == Method::POST && path == "/v2/email/outbound-emails" {
        let from = body["FromEmailAddress"]
            .as_str()
            .ok_or("SendEmail without FromEmailAddress")?;
        // "Name <address>" or the address alone.
        let address = from
            .rsplit_once('<')
            .map(|(_, rest)| rest.trim_end_matches('>'))
            .unwrap_or(from)
            .trim();
        let identity = body["FromEmailAddressIdentityArn"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("arn:aws:ses:{REGION}:{ACCOUNT}:identity/{address}"));
        let mut out = vec![Access::new("ses:SendEmail", identity)];
        if let Some(set) = body["ConfigurationSetName"].as_str() {
            out.push(Access::new(
                "ses:SendEmail",
                format!("arn:aws:ses:{REGION}:{ACCOUNT}:configuration-set/{set}"),
            ));
        }
        return Ok(out);
    }
    Err(format!("SESv2 {method} {path}"))
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

fn s3(
    method: &Method,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Vec<Access>, String> {
    let trimmed = path.trim_start_matches('/');
    let (bucket, key) = match trimmed.split_once('/') {
        Some((b, k)) if !k.is_empty() => (b.to_string(), Some(percent_decode(k))),
        Some((b, _)) => (b.to_string(), None),
        None => (trimmed.to_string(), None),
    };
    let bucket_arn = format!("arn:aws:s3:::{bucket}");
    let object = |key: &str| format!("arn:aws:s3:::{bucket}/{key}");
    let one = |action: &str, resource: String| Ok(vec![Access::new(action, resource)]);
    let unknown = || Err(format!("S3 {method} {path}?{query}"));
    match (method.as_str(), key) {
        ("GET" | "HEAD", Some(key)) => {
            if has_param(query, "tagging") || has_param(query, "acl") {
                return unknown();
            }
            let action = if has_param(query, "versionId") {
                "s3:GetObjectVersion"
            } else {
                "s3:GetObject"
            };
            one(action, object(&key))
        }
        ("GET", None) => {
            if has_param(query, "location") {
                one("s3:GetBucketLocation", bucket_arn)
            } else if has_param(query, "versions") {
                one("s3:ListBucketVersions", bucket_arn)
            } else if has_param(query, "uploads") {
                one("s3:ListBucketMultipartUploads", bucket_arn)
            } else if query.is_empty()
                || has_param(query, "list-type")
                || has_param(query, "prefix")
                || has_param(query, "delimiter")
            {
                one("s3:ListBucket", bucket_arn)
            } else {
                unknown()
            }
        }
        ("HEAD", None) => one("s3:ListBucket", bucket_arn),
        ("PUT", Some(key)) => {
            if has_param(query, "tagging") {
                return one("s3:PutObjectTagging", object(&key));
            }
            if has_param(query, "acl") {
                return one("s3:PutObjectAcl", object(&key));
            }
            let mut out = vec![Access::new("s3:PutObject", object(&key))];
            if let Some(source) = headers
                .get("x-amz-copy-source")
                .and_then(|v| v.to_str().ok())
            {
                let source = percent_decode(source.trim_start_matches('/'));
                let source = source.split('?').next().unwrap_or(&source).to_string();
                out.push(Access::new(
                    "s3:GetObject",
                    format!("arn:aws:s3:::{source}"),
                ));
            }
            Ok(out)
        }
        ("PUT", None) if query.is_empty() => one("s3:CreateBucket", bucket_arn),
        ("POST", Some(key)) if has_param(query, "uploads") || has_param(query, "uploadId") => {
            one("s3:PutObject", object(&key))
        }
        ("POST", None) if has_param(query, "delete") => {
            let text = String::from_utf8_lossy(body);
            let keys: Vec<String> = text
                .split("<Key>")
                .skip(1)
                .filter_map(|rest| rest.split("</Key>").next())
                .map(|k| {
                    k.replace("&amp;", "&")
                        .replace("&lt;", "<")
                        .replace("&gt;", ">")
                })
                .collect();
            Ok(keys
                .iter()
                .map(|k| Access::new("s3:DeleteObject", object(k)))
                .collect())
        }
        ("POST", None) => {
            // A browser-form upload (presigned POST): the key is a form field.
            let fields = form_fields(headers, body).ok_or("an S3 POST that is not a form")?;
            let key = field(&fields, "key").ok_or("an S3 form upload without a key")?;
            one("s3:PutObject", object(&key))
        }
        ("DELETE", Some(key)) => {
            if has_param(query, "uploadId") {
                one("s3:AbortMultipartUpload", object(&key))
            } else {
                one("s3:DeleteObject", object(&key))
            }
        }
        ("DELETE", None) => one("s3:DeleteBucket", bucket_arn),
        _ => unknown(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn target(t: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-amz-target", t.parse().unwrap());
        h
    }

    #[test]
    fn a_transaction_needs_each_items_own_action() {
        let body = json!({"TransactItems": [
            {"ConditionCheck": {"TableName": "t"}},
            {"Put": {"TableName": "t"}},
            {"Delete": {"TableName": "t"}},
        ]});
        let got = accesses(
            "dynamodb",
            &Method::POST,
            "/",
            "",
            &target("DynamoDB_20120810.TransactWriteItems"),
            body.to_string().as_bytes(),
        )
        .unwrap();
        let t = table_arn("t");
        assert_eq!(
            got,
            vec![
                Access::new("dynamodb:ConditionCheckItem", &t),
                Access::new("dynamodb:PutItem", &t),
                Access::new("dynamodb:DeleteItem", &t),
            ]
        );
        let query = json!({"TableName": "t", "IndexName": "by_tenant"});
        let got = accesses(
            "dynamodb",
            &Method::POST,
            "/",
            "",
            &target("DynamoDB_20120810.Query"),
            query.to_string().as_bytes(),
        )
        .unwrap();
        assert_eq!(got[0].resource, format!("{t}/index/by_tenant"));
        assert!(
            accesses(
                "dynamodb",
                &Method::POST,
                "/",
                "",
                &target("DynamoDB_20120810.ExecuteStatement"),
                b"{}"
            )
            .is_err(),
            "an operation the harness does not know is refused"
        );
    }

    #[test]
    fn s3_objects_and_buckets() {
        let h = HeaderMap::new();
        let get = accesses("s3", &Method::GET, "/b/sites/a%20b/x.bin", "", &h, b"").unwrap();
        assert_eq!(
            get,
            vec![Access::new(
                "s3:GetObject",
                "arn:aws:s3:::b/sites/a b/x.bin"
            )]
        );
        let list = accesses(
            "s3",
            &Method::GET,
            "/b",
            "list-type=2&prefix=sites",
            &h,
            b"",
        )
        .unwrap();
        assert_eq!(list, vec![Access::new("s3:ListBucket", "arn:aws:s3:::b")]);
        let delete = accesses(
            "s3",
            &Method::POST,
            "/b",
            "delete",
            &h,
            b"<Delete><Object><Key>k1</Key></Object><Object><Key>k2</Key></Object></Delete>",
        )
        .unwrap();
        assert_eq!(delete.len(), 2);
        let mut form = HeaderMap::new();
        form.insert(
            "content-type",
            "multipart/form-data; boundary=XX".parse().unwrap(),
        );
        let body = b"--XX\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\ndocs/1.pdf\r\n--XX\r\nContent-Disposition: form-data; name=\"x-amz-credential\"\r\n\r\nManagementFunction/20260101/us-east-1/s3/aws4_request\r\n--XX--\r\n";
        assert_eq!(
            accesses("s3", &Method::POST, "/b", "", &form, body).unwrap(),
            vec![Access::new("s3:PutObject", "arn:aws:s3:::b/docs/1.pdf")]
        );
        assert_eq!(
            signer(&form, "", body).unwrap().access_key,
            "ManagementFunction"
        );
    }
}
