//! The OpenAPI document: `openapi.yaml` is what the service serves, every route is in it, and
//! every operation meets the same bar (operationId, tag, summary, security, problem+json errors,
//! `x-request-id`, examples), so a resource added later is held to it without new tests.
//! That the document is *true* is checked against the running service by `scripts/contract`.

use crate::common::{settings, spawn_app, strings};
use serde_json::Value;
use statekeeper::{
    capabilities::{
        agent_state::model::ListCursor as ThreadCursor, cache::model::ListCursor,
        session::model::SessionCursor,
    },
    config::BackendMode,
    http::openapi,
};

/// Whether `operation` takes a parameter of this name (any case) in this place.
fn takes(operation: &Value, name: &str, place: &str) -> bool {
    let mut parameters = operation["parameters"].as_array().into_iter().flatten();
    parameters.any(|p| {
        p["in"] == place
            && p["name"]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
    })
}

/// Asserts that `operation` documents each of these statuses.
fn documents(operation: &Value, statuses: &[&str], which: &str) {
    for status in statuses {
        let documented = operation["responses"].get(*status).is_some();
        assert!(documented, "{which} documents {status}");
    }
}

fn document() -> Value {
    serde_json::to_value(openapi::spec()).unwrap()
}

/// Every `(method, path, operation)` of the document.
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut all = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            if ["get", "put", "post", "delete", "patch", "head"].contains(&method.as_str()) {
                all.push((method.clone(), path.clone(), operation.clone()));
            }
        }
    }
    all
}

/// A `$ref` followed within the document.
fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    match value["$ref"].as_str() {
        Some(reference) => doc
            .pointer(reference.trim_start_matches('#'))
            .unwrap_or_else(|| panic!("{reference} resolves")),
        None => value,
    }
}

fn has_example(doc: &Value, schema: &Value) -> bool {
    let schema = resolve(doc, schema);
    schema.get("example").is_some()
        || schema.get("examples").is_some()
        || schema["properties"]
            .as_object()
            .is_some_and(|props| props.values().any(|p| has_example(doc, p)))
        || schema["allOf"]
            .as_array()
            .is_some_and(|parts| parts.iter().any(|p| has_example(doc, p)))
}

#[test]
fn openapi_yaml_matches_the_generated_document() {
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml"))
        .expect("openapi.yaml exists at the repository root");
    assert!(
        committed == openapi::yaml(),
        "openapi.yaml is stale: regenerate it with `cargo run -- openapi > openapi.yaml`"
    );
}

#[test]
fn openapi_yaml_reads_as_the_served_json() {
    let yaml: Value = yaml_serde::from_str(&openapi::yaml()).expect("openapi.yaml is YAML");
    assert_eq!(
        yaml,
        document(),
        "numbers and structure survive the YAML form"
    );
}

#[tokio::test]
async fn served_document_is_the_generated_one() {
    let app = spawn_app(settings(BackendMode::Memory, None)).await;
    let (status, served) = app.get_json("/openapi.json").await;
    assert_eq!(status, 200);
    assert_eq!(served, document());
    let paths = served["paths"].as_object().unwrap();
    for path in [
        "/openapi.json",
        "/health",
        "/health/live",
        "/health/ready",
        "/v1/cache/{namespace}/{key}",
        "/v1/cache/{namespace}/{key}/ttl",
    ] {
        assert!(paths.contains_key(path), "{path} is documented");
    }
    assert!(served["components"]["securitySchemes"]["bearer"].is_object());
}

#[test]
fn every_operation_has_a_snake_case_id_a_declared_tag_and_a_summary() {
    let doc = document();
    let declared: Vec<&str> = strings(&doc["tags"], "name");
    let mut ids = std::collections::BTreeSet::new();
    for (method, path, operation) in operations(&doc) {
        let id = operation["operationId"].as_str().unwrap_or_default();
        let snake = !id.is_empty()
            && id.starts_with(|c: char| c.is_ascii_lowercase())
            && id
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        assert!(snake, "{method} {path}: operationId {id:?} is snake_case");
        assert!(ids.insert(id.to_string()), "operationId {id} is unique");
        let tags = operation["tags"].as_array().cloned().unwrap_or_default();
        assert_eq!(tags.len(), 1, "{method} {path} has one tag");
        let tag = tags[0].as_str().unwrap();
        assert!(
            declared.contains(&tag),
            "{method} {path}: tag {tag} is declared"
        );
        let summary = operation["summary"].as_str().unwrap_or_default();
        assert!(!summary.trim().is_empty(), "{method} {path} has a summary");
    }
}

#[test]
fn every_operation_states_its_security() {
    let doc = document();
    for (method, path, operation) in operations(&doc) {
        let security = operation["security"]
            .as_array()
            .unwrap_or_else(|| panic!("{method} {path} states its security"));
        let open = security
            .iter()
            .all(|requirement| requirement.as_object().is_some_and(|r| r.is_empty()));
        if path.starts_with("/health") || path == "/openapi.json" || path == "/metrics" {
            assert!(open, "{method} {path} needs no API key");
        } else {
            assert!(
                !open && security.iter().all(|r| r.get("bearer").is_some()),
                "{method} {path} needs the bearer API key"
            );
            documents(&operation, &["401", "403"], &format!("{method} {path}"));
        }
    }
}

#[test]
fn every_error_response_is_a_problem_document() {
    let doc = document();
    for (method, path, operation) in operations(&doc) {
        for (status, response) in operation["responses"].as_object().unwrap() {
            let response = resolve(&doc, response);
            if !(status.starts_with('4') || status.starts_with('5')) {
                continue;
            }
            // HEAD answers have no body; the health probes answer 503 with their own
            // documented JSON body (DESIGN section 4).
            let own_body = path.starts_with("/health") && status == "503";
            if method == "head" || own_body {
                continue;
            }
            let content = response["content"].as_object();
            let problem = content.and_then(|c| c.get("application/problem+json"));
            assert!(
                problem.is_some() && content.unwrap().len() == 1,
                "{method} {path} {status} is application/problem+json"
            );
            let schema = resolve(&doc, &problem.unwrap()["schema"]);
            let required: Vec<&str> = schema["required"]
                .as_array()
                .or_else(|| {
                    schema["allOf"].as_array().and_then(|parts| {
                        parts
                            .iter()
                            .find_map(|p| resolve(&doc, p)["required"].as_array())
                    })
                })
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            for field in ["type", "title", "status", "detail", "code"] {
                assert!(
                    required.contains(&field),
                    "{method} {path} {status}: the problem schema requires {field}"
                );
            }
        }
        documents(&operation, &["500", "503"], &format!("{method} {path}"));
        if operation.get("requestBody").is_some() {
            let with_body = format!("{method} {path} has a body, so it");
            documents(&operation, &["400", "413", "415", "422"], &with_body);
        }
    }
}

#[test]
fn every_operation_carries_the_request_id() {
    let doc = document();
    for (method, path, operation) in operations(&doc) {
        assert!(
            takes(&operation, "x-request-id", "header"),
            "{method} {path} takes an x-request-id header"
        );
        for (status, response) in operation["responses"].as_object().unwrap() {
            assert!(
                resolve(&doc, response)["headers"]
                    .get("x-request-id")
                    .is_some(),
                "{method} {path} {status} documents the x-request-id header"
            );
        }
    }
}

#[test]
fn request_bodies_responses_and_path_parameters_have_examples() {
    let doc = document();
    for (method, path, operation) in operations(&doc) {
        if let Some(body) = operation.get("requestBody") {
            let body = resolve(&doc, body);
            for (media, content) in body["content"].as_object().unwrap() {
                assert!(
                    content.get("example").is_some()
                        || content.get("examples").is_some()
                        || has_example(&doc, &content["schema"]),
                    "{method} {path}: the {media} request body has an example"
                );
            }
        }
        for (status, response) in operation["responses"].as_object().unwrap() {
            let response = resolve(&doc, response);
            let Some(json) = response["content"].get("application/json") else {
                continue;
            };
            if status.starts_with('2') {
                assert!(
                    json.get("example").is_some()
                        || json.get("examples").is_some()
                        || has_example(&doc, &json["schema"]),
                    "{method} {path} {status}: the response has an example"
                );
            }
        }
        for parameter in operation["parameters"].as_array().into_iter().flatten() {
            if parameter["in"] == "path" {
                assert!(
                    parameter.get("example").is_some() || has_example(&doc, &parameter["schema"]),
                    "{method} {path}: path parameter {} has an example",
                    parameter["name"]
                );
            }
        }
    }
}

/// The documented listing cursors' patterns are the ones the service parses.
#[test]
fn the_documented_cursor_patterns_are_the_ones_the_service_parses() {
    let doc = document();
    for (path, pattern) in [
        ("/v1/cache/{namespace}", ListCursor::PATTERN),
        ("/v1/agent-states", ThreadCursor::PATTERN),
        ("/v1/users/{user_id}/sessions", SessionCursor::PATTERN),
    ] {
        let parameters = doc["paths"][path]["get"]["parameters"].as_array().unwrap();
        let cursor = parameters.iter().find(|p| p["name"] == "cursor").unwrap();
        assert_eq!(cursor["schema"]["pattern"], pattern, "{path}");
    }
}

#[test]
fn preconditions_and_idempotency_keys_are_documented_where_they_apply() {
    let doc = document();
    for (method, path, operation) in operations(&doc) {
        let takes = |name: &str, place: &str| takes(&operation, name, place);
        // A 412 answers a precondition the caller sent: `If-Match` (versioned writes) or the
        // cache's `?if=absent|present`.
        if operation["responses"].get("412").is_some() {
            assert!(
                takes("If-Match", "header") || takes("if", "query"),
                "{method} {path} documents 412, so it documents the precondition it checks"
            );
        }
        if takes("If-Match", "header") {
            assert!(
                operation["responses"].get("412").is_some(),
                "{method} {path} takes If-Match, so it documents 412"
            );
        }
        // DESIGN section 4: a retried confirm with the same Idempotency-Key gets the same 200.
        if method == "post"
            && path.starts_with("/v1/pending-actions/")
            && path.ends_with("/confirm")
        {
            assert!(
                takes("Idempotency-Key", "header"),
                "{method} {path} documents the Idempotency-Key header"
            );
        }
    }
}

/// `/docs` serves Swagger UI from the binary, pointed at `/openapi.json`, without an API key;
/// `docs.enabled = false` removes it. (`scripts/clients` drives it in a real browser.)
#[tokio::test]
async fn interactive_docs_are_served_from_the_binary() {
    let mut with_keys = settings(BackendMode::Memory, None);
    with_keys.auth.keys = vec![statekeeper::config::ApiKeySettings {
        sha256: "0".repeat(64),
        tenant: "t".into(),
        scopes: vec![statekeeper::config::Scope::Read],
    }];
    let app = spawn_app(with_keys).await;
    let redirect = app.client.get(app.url("/docs")).send().await.unwrap();
    assert_eq!(redirect.url().path(), "/docs/", "followed to /docs/");
    let page = app.get("/docs/").await;
    assert_eq!(page.status, 200);
    assert!(page.text().contains("swagger-ui-bundle.js"));
    let bundle = app.get("/docs/swagger-ui-bundle.js").await;
    assert_eq!(bundle.status, 200);
    assert!(bundle.bytes.len() > 100_000, "the assets are in the binary");
    let init = app.get("/docs/swagger-initializer.js").await;
    assert!(
        init.text().contains("\"url\": \"/openapi.json\""),
        "{}",
        init.text()
    );

    let mut off = settings(BackendMode::Memory, None);
    off.docs.enabled = false;
    let app = spawn_app(off).await;
    app.get("/docs/").await.assert_problem(404, "not_found");
}

/// No two capabilities give one schema name to different types: the document holds one schema
/// per name, so the second would silently be documented as the first.
#[test]
fn schema_names_are_not_shared_by_different_types() {
    let mut seen: std::collections::BTreeMap<String, (&str, Value)> = Default::default();
    let mut clashes = Vec::new();
    for declaration in statekeeper::capabilities::ALL {
        let Some(api) = declaration.openapi else {
            continue;
        };
        let doc = serde_json::to_value(api()).unwrap();
        let name = declaration.capability.name();
        for (schema, body) in doc["components"]["schemas"]
            .as_object()
            .into_iter()
            .flatten()
        {
            match seen.get(schema) {
                Some((first, held)) if held != body => {
                    clashes.push(format!("{schema}: {first} and {name}"));
                }
                Some(_) => {}
                None => {
                    seen.insert(schema.clone(), (name, body.clone()));
                }
            }
        }
    }
    assert!(clashes.is_empty(), "{clashes:?}");
}
