//! The OpenAPI document, generated from the handlers' `utoipa` annotations. `openapi.yaml` at
//! the repository root is this document as `statekeeper openapi` prints it.

use axum::{Json, Router, routing::get};
use utoipa::{
    Modify, OpenApi,
    openapi::{
        Content, Object, Ref, RefOr, Required, Type,
        header::Header,
        path::{Operation, ParameterBuilder, ParameterIn, PathItem},
        response::Response,
        security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme},
    },
};

use super::{admin, health, metrics, state::AppState};
use crate::error::Problem;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "statekeeper",
        description = "Short-lived state over HTTP: agent conversation state, confirmation tokens, \
                       sessions and a namespaced JSON cache, on Redis with an in-memory fallback. \
                       Errors are RFC 9457 problem documents with a stable `code`.",
        license(name = "MIT OR Apache-2.0")
    ),
    paths(
        document,
        health::health,
        health::live,
        health::ready,
        metrics::scrape,
    ),
    components(schemas(Problem)),
    tags(
        (name = "openapi", description = "This API description; no API key needed"),
        (name = "health", description = "Liveness, readiness and backend state; no API key needed"),
    )
)]
struct Kernel;

#[derive(OpenApi)]
#[openapi(
    paths(admin::backup, admin::restore, admin::cleanup),
    tags(
        (name = "admin", description = "Backup and restore of a tenant's items as NDJSON records, and clean-ups; API keys with the admin scope"),
    )
)]
struct Admin;

/// The whole document: the kernel's routes, then each capability's part (its `http::Api`, in
/// the order of `capabilities::ALL`), then the admin routes, and the contract every operation
/// shares (auth, the common responses, free-form objects).
pub fn spec() -> utoipa::openapi::OpenApi {
    let mut doc = Kernel::openapi();
    for declaration in crate::capabilities::ALL {
        if let Some(api) = declaration.openapi {
            doc.merge(api());
        }
    }
    doc.merge(Admin::openapi());
    for modifier in [
        &BearerAuth as &dyn Modify,
        &CommonResponses,
        &FreeFormObjects,
    ] {
        modifier.modify(&mut doc);
    }
    doc
}

struct BearerAuth;

/// Says `additionalProperties: true` on every object schema that names no properties (a
/// context, metadata, entities, session data...): JSON Schema means any members by it already,
/// but generators read a bare `type: object` as "no members" (openapi-typescript writes
/// `Record<string, never>`, which strict TypeScript cannot read a field of).
struct FreeFormObjects;

impl Modify for FreeFormObjects {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = openapi.components.as_mut() {
            components.schemas.values_mut().for_each(free_form);
        }
        for item in openapi.paths.paths.values_mut() {
            for (_, operation) in operations(item) {
                let bodies = operation.request_body.iter_mut().flat_map(|b| match b {
                    RefOr::T(body) => Some(body.content.values_mut()),
                    RefOr::Ref(_) => None,
                });
                let answers = operation
                    .responses
                    .responses
                    .values_mut()
                    .filter_map(|r| match r {
                        RefOr::T(response) => Some(response.content.values_mut()),
                        RefOr::Ref(_) => None,
                    });
                for content in bodies.flatten().chain(answers.flatten()) {
                    if let RefOr::T(content) = content {
                        content.schema.iter_mut().for_each(free_form);
                    }
                }
            }
        }
    }
}

/// Marks `schema` and every schema inside it that is an object naming no members as free-form.
fn free_form(schema: &mut RefOr<utoipa::openapi::schema::Schema>) {
    use utoipa::openapi::schema::{AdditionalProperties, ArrayItems, Schema, SchemaType};
    let RefOr::T(schema) = schema else {
        return;
    };
    match schema {
        Schema::Object(object) => {
            let is_object = match &object.schema_type {
                SchemaType::Type(kind) => *kind == Type::Object,
                SchemaType::Array(kinds) => kinds.contains(&Type::Object),
                SchemaType::AnyValue => false,
            };
            if is_object && object.properties.is_empty() && object.additional_properties.is_none() {
                object.additional_properties = Some(Box::new(AdditionalProperties::FreeForm(true)));
            }
            object.properties.values_mut().for_each(free_form);
            if let Some(AdditionalProperties::RefOr(inner)) =
                object.additional_properties.as_deref_mut()
            {
                free_form(inner);
            }
        }
        Schema::Array(array) => {
            if let ArrayItems::RefOrSchema(items) = &mut array.items {
                free_form(items);
            }
        }
        Schema::OneOf(one_of) => one_of.items.iter_mut().for_each(free_form),
        Schema::AllOf(all_of) => all_of.items.iter_mut().for_each(free_form),
        Schema::AnyOf(any_of) => any_of.items.iter_mut().for_each(free_form),
        _ => {}
    }
}

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API key configured by its SHA-256 in `auth.keys`; not needed when \
                         no keys are configured",
                    ))
                    .build(),
            ),
        );
    }
}

/// What every operation can answer besides its own responses, added where an operation does
/// not document the status itself, so that each resource is held to the same contract:
/// - the `x-request-id` request header and the same header on every response (the middleware
///   takes it from the request or makes one);
/// - the bearer key on every `/v1` operation, with 401 `unauthorized` / 403 `forbidden`;
/// - a problem document as the body of every error status an operation documents itself;
/// - 400 `invalid_request` (malformed JSON), 413 `payload_too_large`, 415
///   `unsupported_media_type` and 422 `validation_failed` on operations with a request body;
/// - 503 `backend_unavailable` / `timeout` and the opaque 500 on every operation;
/// - 507 `backend_full` on operations that write (`PUT`, `POST`, `PATCH`).
struct CommonResponses;

const REQUEST_ID: &str = "x-request-id";
const PROBLEM_JSON: &str = "application/problem+json";

fn problem_content() -> RefOr<Content> {
    RefOr::T(Content::new(Some(Ref::from_schema_name("Problem"))))
}

impl Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            let needs_key = path.starts_with("/v1/");
            for (kind, operation) in operations(item) {
                declare_security(operation, needs_key);
                add_common_responses(operation, kind);
            }
        }
    }
}

/// The operations of a path with their method: `HEAD` answers no body, `PUT`, `POST` and
/// `PATCH` write.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Head,
    Read,
    Write,
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = (Kind, &mut Operation)> {
    [
        (Kind::Read, item.get.as_mut()),
        (Kind::Write, item.put.as_mut()),
        (Kind::Write, item.post.as_mut()),
        (Kind::Read, item.delete.as_mut()),
        (Kind::Write, item.patch.as_mut()),
        (Kind::Head, item.head.as_mut()),
    ]
    .into_iter()
    .filter_map(|(kind, op)| op.map(|op| (kind, op)))
}

/// Every `/v1` operation needs the bearer key (each of their handlers takes `Reader` or
/// `Writer`); the others (health, this document) say explicitly that they need none.
fn declare_security(operation: &mut Operation, needs_key: bool) {
    let requirement = if needs_key {
        SecurityRequirement::new("bearer", Vec::<String>::new())
    } else {
        SecurityRequirement::default()
    };
    operation.security = Some(vec![requirement]);
}

/// Whether an operation needs the bearer key.
fn needs_key(operation: &Operation) -> bool {
    operation
        .security
        .iter()
        .flatten()
        .any(|requirement| *requirement != SecurityRequirement::default())
}

fn add_common_responses(operation: &mut Operation, kind: Kind) {
    let parameters = operation.parameters.get_or_insert_with(Vec::new);
    let has_request_id = parameters
        .iter()
        .any(|p| matches!(p, RefOr::T(p) if p.name.eq_ignore_ascii_case(REQUEST_ID)));
    if !has_request_id {
        parameters.push(RefOr::T(
            ParameterBuilder::new()
                .name(REQUEST_ID)
                .parameter_in(ParameterIn::Header)
                .required(Required::False)
                .description(Some(
                    "Correlates the request in logs; echoed on the response. Made when absent.",
                ))
                .schema(Some(Object::with_type(Type::String)))
                .example(Some(serde_json::json!(
                    "0f0c8a3e-5a8e-4d7c-9a59-2f1f4c1b6d2a"
                )))
                .build(),
        ));
    }
    let mut common = vec![(
        "500",
        "`internal`: the server failed; the body says nothing internal",
    )];
    common.push((
        "503",
        "`backend_unavailable`: the storage backend cannot be reached (mode `redis`); \
         `timeout`: the request ran longer than `server.request_timeout_ms`",
    ));
    if kind == Kind::Write {
        common.push((
            "507",
            "`backend_full`: Redis is out of memory, or the memory backend is at \
             `memory.max_bytes`; nothing was written (see `Retry-After`)",
        ));
    }
    if needs_key(operation) {
        common.push(("401", "`unauthorized`: API key missing or not valid"));
        common.push(("403", "`forbidden`: the API key lacks the needed scope"));
    }
    if operation.request_body.is_some() {
        common.push(("400", "`invalid_request`: the body is not valid JSON"));
        common.push((
            "413",
            "`payload_too_large`: the body is larger than `limits.max_body_bytes`",
        ));
        common.push((
            "415",
            "`unsupported_media_type`: the body is not declared as `application/json`",
        ));
        common.push((
            "422",
            "`validation_failed`: the JSON does not fit the request schema",
        ));
    }
    let responses = &mut operation.responses.responses;
    // An error documented by the operation itself answers a problem document too.
    for (status, response) in responses.iter_mut() {
        if let RefOr::T(response) = response
            && kind != Kind::Head
            && status.parse::<u16>().is_ok_and(|status| status >= 400)
            && response.content.is_empty()
        {
            response
                .content
                .insert(PROBLEM_JSON.into(), problem_content());
        }
    }
    for (status, description) in common {
        if !responses.contains_key(status) {
            let mut response = Response::new(description);
            if kind != Kind::Head {
                response
                    .content
                    .insert(PROBLEM_JSON.into(), problem_content());
            }
            responses.insert(status.into(), RefOr::T(response));
        }
    }
    for response in responses.values_mut() {
        if let RefOr::T(response) = response {
            response
                .headers
                .entry(REQUEST_ID.into())
                .or_insert_with(|| {
                    let mut header = Header::new(Object::with_type(Type::String));
                    header.description = Some("The request's id, as sent or made".into());
                    RefOr::T(header)
                });
        }
    }
}

/// This document (what `openapi.yaml` holds), as JSON.
#[utoipa::path(
    get, path = "/openapi.json", tag = "openapi", operation_id = "openapi_document",
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object,
        example = json!({"openapi": "3.1.0", "info": {"title": "statekeeper", "version": "0.1.0"}, "paths": {}}))),
)]
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(spec())
}

/// The document as YAML, exactly as `openapi.yaml` holds it.
pub fn yaml() -> String {
    let yaml = spec().to_yaml().expect("the OpenAPI document serialises");
    inline_numbers(&yaml)
}

/// The marker serde_json's `arbitrary_precision` (which keeps callers' numbers exact) puts
/// around a number when a serialiser other than serde_json's writes it.
const NUMBER_MARKER: &str = "$serde_json::private::Number: '";

/// Writes each marked number back as a plain YAML number: `key:` followed by an indented
/// `$serde_json::private::Number: '100'` line becomes `key: 100`, and `- $serde_json::...` in
/// a list becomes `- 100`.
fn inline_numbers(yaml: &str) -> String {
    let number = |text: &str| {
        text.trim_start()
            .strip_prefix(NUMBER_MARKER)
            .and_then(|rest| rest.strip_suffix('\''))
            .map(str::to_string)
    };
    let mut out = String::with_capacity(yaml.len());
    let mut lines = yaml.lines().peekable();
    while let Some(line) = lines.next() {
        if line.ends_with(':')
            && let Some(value) = lines.peek().and_then(|next| number(next))
        {
            lines.next();
            out.push_str(line);
            out.push(' ');
            out.push_str(&value);
        } else if let Some((indent, item)) = line.split_once("- ")
            && indent.trim().is_empty()
            && let Some(value) = number(item)
        {
            out.push_str(indent);
            out.push_str("- ");
            out.push_str(&value);
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

pub fn routes() -> Router<AppState> {
    Router::new().route("/openapi.json", get(document))
}

/// Interactive docs at `/docs` (Swagger UI, its assets inside the binary), reading
/// `/openapi.json`: "Authorize" takes an API key for the bearer scheme, "Try it out" calls the
/// service.
pub fn docs() -> Router<AppState> {
    let config = utoipa_swagger_ui::Config::new(["/openapi.json"])
        .try_it_out_enabled(true)
        .persist_authorization(true)
        .display_request_duration(true);
    utoipa_swagger_ui::SwaggerUi::new("/docs")
        .config(config)
        .into()
}
