//! The OpenAPI 3.1 document at `/api/v1/openapi.json`, generated from the same operation table
//! the router is built from (`routes::operations`), so the two cannot drift apart.

use serde_json::{Map, Value, json};

use crate::http::Operation;

/// Request body schemas, by the name the operation table uses: derived from the wire types in
/// `writ_api::wire` (the types the server parses bodies into), so the document states exactly
/// the fields, patterns and lengths the server checks.
pub fn schemas() -> Value {
    use writ_api::wire::{self, schema};
    json!({
        "NewIdentity": schema::<wire::NewIdentity>(),
        "NewTarget": target_schema(),
        "NewChange": schema::<wire::NewChange>(),
        "Approval": schema::<wire::Approval>(),
        "Decision": schema::<wire::Decision>(),
        "Offboard": schema::<wire::Offboard>(),
        "Review": schema::<wire::Review>(),
        "Comment": schema::<wire::Comment>(),
        "Rollback": schema::<wire::Rollback>(),
        "NoFields": schema::<wire::NoFields>(),
        "BreakGlass": schema::<wire::BreakGlass>(),
        "ResolveFinding": schema::<wire::ResolveFinding>(),
        "RemediateFinding": schema::<wire::RemediateFinding>(),
        "Reconcile": schema::<wire::Reconcile>(),
        "ResumeAutomation": schema::<wire::ResumeAutomation>(),
        "TransferRequest": schema::<wire::TransferRequest>(),
        "TransferDecision": schema::<wire::TransferDecision>(),
        "RetryNotification": schema::<wire::RetryNotification>(),
        "UsageReport": schema::<wire::UsageReport>(),
        "NewException": schema::<wire::NewException>(),
        "Renewal": schema::<wire::Renewal>(),
        "NewToken": schema::<wire::NewToken>(),
        "NewDelegation": schema::<wire::NewDelegation>(),
        "ScimLink": schema::<wire::ScimLink>(),
        "Error": {
            "type": "object", "required": ["error"],
            "properties": { "error": {
                "type": "object", "required": ["code", "message"],
                "properties": { "code": { "type": "string" }, "message": { "type": "string" }, "field": { "type": "string" } }
            } }
        }
    })
}

/// A target registration: the wire type's fields, with one branch per connector that may be
/// registered, each stating exactly the settings its registration checks.
fn target_schema() -> Value {
    use writ_connector::registry::SettingKind;
    const PRINTABLE: &str = r"^[^\u0000-\u001F\u007F-\u009F]+$";
    const ABSOLUTE: &str = r"^/[^\u0000-\u001F\u007F-\u009F]*$";
    const TIMEOUT: &str = r"^([1-9]|[1-9][0-9]|[12][0-9][0-9]|300)s$|^[1-5]m$";
    let mut schema = writ_api::wire::schema::<writ_api::wire::NewTarget>();
    let branches: Vec<Value> = crate::targets::public()
        .map(|registration| {
            let mut properties = Map::new();
            for setting in registration.settings {
                let pattern = match setting.kind {
                    SettingKind::Text => PRINTABLE,
                    SettingKind::Path | SettingKind::SecretFile => ABSOLUTE,
                    SettingKind::Timeout => TIMEOUT,
                };
                properties.insert(
                    setting.key.to_owned(),
                    json!({ "type": "string", "minLength": 1, "maxLength": 4096, "pattern": pattern, "description": setting.help }),
                );
            }
            let required: Vec<&str> =
                registration.settings.iter().filter(|s| s.required).map(|s| s.key).collect();
            let settings = json!({ "type": "object", "additionalProperties": false, "properties": properties, "required": required });
            let mut branch = json!({
                "description": registration.summary,
                "properties": { "connector": { "const": registration.name }, "settings": settings },
            });
            if let (false, Some(object)) = (required.is_empty(), branch.as_object_mut()) {
                object.insert("required".into(), json!(["settings"]));
            }
            branch
        })
        .collect();
    if let Some(object) = schema.as_object_mut() {
        object.insert("oneOf".into(), Value::Array(branches));
    }
    schema
}

/// The document for `operations` (every operation the router serves).
pub fn document_value(operations: &[Operation]) -> Value {
    let mut schemas = schemas();
    // Response views are components, referenced where an operation answers them.
    let mut settings = schemars::generate::SchemaSettings::draft2020_12();
    settings.definitions_path = "/components/schemas".into();
    let mut views = settings.into_generator();
    let mut paths: Map<String, Value> = Map::new();
    for operation in operations {
        let scim = operation.path.starts_with("/scim/");
        let content: Map<String, Value> =
            operation.media.iter().map(|media| ((*media).to_owned(), json!({}))).collect();
        let mut responses = Map::new();
        let error = if scim {
            json!({ "description": "A SCIM error (RFC 7644 section 3.12)", "content": { "application/scim+json": {} } })
        } else {
            json!({ "$ref": "#/components/responses/Error" })
        };
        // An operation routed only to say it is not implemented answers nothing else.
        let errors: &[&str] = if operation.unsupported {
            &["401", "403", "429", "501"]
        } else {
            let content = match operation.response {
                Some(view) => {
                    let schema = view(&mut views).to_value();
                    operation
                        .media
                        .iter()
                        .map(|media| ((*media).to_owned(), json!({ "schema": schema })))
                        .collect()
                }
                None => content,
            };
            responses.insert("200".into(), json!({ "description": "OK", "content": content }));
            match operation.method.as_str() {
                "POST" | "PUT" => {
                    responses.insert("201".into(), json!({ "description": "Created", "content": content }));
                }
                "DELETE" => {
                    responses.insert("204".into(), json!({ "description": "Deleted" }));
                }
                _ if scim => {
                    responses.insert("304".into(), json!({ "description": "Not modified (If-None-Match)" }));
                }
                _ => {}
            }
            &[
                "400", "401", "403", "404", "409", "412", "413", "414", "415", "422", "429", "500", "502",
                "503",
            ]
        };
        for status in errors.iter().copied() {
            responses.insert(status.into(), error.clone());
        }
        let roles: Vec<&str> = operation.roles.iter().map(|r| r.as_str()).collect();
        let mut entry = json!({
            "summary": operation.summary,
            "responses": Value::Object(responses),
            "x-writ-roles": roles,
        });
        let parameters: Vec<Value> = path_parameters(operation.path)
            .into_iter()
            .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": path_schema(operation.path, name) }))
            .chain(operation.query.map(query_parameters).unwrap_or_default())
            .chain(operation.idempotent.then(|| {
                json!({ "name": "Idempotency-Key", "in": "header", "required": false, "schema": { "type": "string", "pattern": "^[!-~]{1,255}$" } })
            }))
            .collect();
        if let Some(object) = entry.as_object_mut() {
            if !parameters.is_empty() {
                object.insert("parameters".into(), Value::Array(parameters));
            }
            if operation.roles.is_empty() {
                object.insert("security".into(), json!([]));
            }
            match operation.body {
                Some("binary") => {
                    object.insert("requestBody".into(), json!({ "required": true, "content": { "application/octet-stream": { "schema": { "type": "string", "format": "binary", "minLength": 1 } } } }));
                }
                Some(schema) => {
                    // A body with required fields must be sent; one without may be left out.
                    let required = schemas
                        .get(schema)
                        .and_then(|s| s.get("required"))
                        .is_some_and(|r| r.as_array().is_some_and(|r| !r.is_empty()));
                    object.insert("requestBody".into(), json!({ "required": required, "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } } }));
                }
                None => {}
            }
        }
        let method = operation.method.as_str().to_ascii_lowercase();
        if let Some(path) = paths.entry(operation.path).or_insert_with(|| json!({})).as_object_mut() {
            path.insert(method, entry);
        }
    }
    if let Some(components) = schemas.as_object_mut() {
        components.extend(views.take_definitions(true));
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Writ API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Every access change goes through one change record: request, approval, implementation, verification, review. Errors are {\"error\": {\"code\", \"message\", \"field\"}} with stable codes."
        },
        "security": [{ "bearer": [] }],
        "paths": paths,
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer", "description": "A Writ API token (`writ token create`)." } },
            "schemas": schemas,
            "responses": { "Error": { "description": "An error with a stable code", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } } }
        }
    })
}

/// The query parameters a query struct's schema describes, each with its own schema.
fn query_parameters(schema: fn() -> Value) -> Vec<Value> {
    let schema = schema();
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    schema
        .get("properties")
        .and_then(Value::as_object)
        .map(|properties| {
            properties
                .iter()
                .map(|(name, property)| {
                    json!({ "name": name, "in": "query", "required": required.contains(&name.as_str()), "schema": property })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// What a path parameter must look like, as the handlers parse it.
fn path_schema(path: &str, name: &str) -> Value {
    let ulid = |prefix: &str| json!({ "type": "string", "pattern": format!("^{prefix}-[0-7][0-9A-HJKMNP-TV-Z]{{25}}$") });
    match name {
        "name" | "source" | "principal" | "delegate" if path.starts_with("/api/v1/") => {
            json!({ "type": "string", "pattern": writ_api::wire::NAME_PATTERN })
        }
        "decision" => json!({ "type": "string", "enum": ["accept", "decline", "cancel"] }),
        "role" => {
            json!({ "type": "string", "enum": ["requester", "approver", "executor", "reviewer", "admin", "auditor", "provisioner"] })
        }
        "id" if path.starts_with("/api/v1/changes/") => ulid("CHG"),
        "id" if path.starts_with("/api/v1/exceptions/") => ulid("EXC"),
        "id" if path.starts_with("/api/v1/transfers/") => ulid("TRF"),
        "id" if path.starts_with("/api/v1/notifications/") => {
            json!({ "type": "string", "pattern": writ_api::wire::NOTIFICATION_PATTERN })
        }
        "id" if path.starts_with("/api/v1/findings/") => {
            json!({ "type": "string", "pattern": "^FND-[0-9a-f]{16}$" })
        }
        "sha256" => json!({ "type": "string", "pattern": "^[0-9a-f]{64}$" }),
        "index" => json!({ "type": "integer", "minimum": 0, "maximum": u64::MAX }),
        _ => json!({ "type": "string", "minLength": 1 }),
    }
}

fn path_parameters(path: &str) -> Vec<&str> {
    path.split('/').filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}'))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use writ_api::wire as api;

    fn sample(schema: &Value) -> Value {
        let mut object = Map::new();
        let none = Map::new();
        for (name, property) in schema["properties"].as_object().unwrap_or(&none) {
            let types = match &property["type"] {
                Value::Array(types) => types.iter().filter_map(Value::as_str).collect::<Vec<_>>(),
                other => vec![other.as_str().unwrap()],
            };
            let value = if types.contains(&"array") {
                json!(["x"])
            } else if types.contains(&"object") {
                // A nested body (inlined) gets its own sample.
                sample(property)
            } else {
                json!("x")
            };
            object.insert(name.clone(), value);
        }
        Value::Object(object)
    }

    #[test]
    fn every_schema_property_is_a_field_of_its_struct() {
        let schemas = schemas();
        // `schemas()` holds the request bodies (and the error); response views are added later.
        for (name, schema) in schemas.as_object().unwrap() {
            if name != "Error" {
                assert_eq!(schema["additionalProperties"], false, "{name} must refuse unknown fields");
            }
        }
        serde_json::from_value::<api::NewIdentity>(sample(&schemas["NewIdentity"])).unwrap();
        serde_json::from_value::<api::NewTarget>(sample(&schemas["NewTarget"])).unwrap();
        serde_json::from_value::<api::NewChange>(sample(&schemas["NewChange"])).unwrap();
        serde_json::from_value::<api::Approval>(sample(&schemas["Approval"])).unwrap();
        serde_json::from_value::<api::Decision>(sample(&schemas["Decision"])).unwrap();
        serde_json::from_value::<api::Review>(sample(&schemas["Review"])).unwrap();
        serde_json::from_value::<api::NoFields>(sample(&schemas["NoFields"])).unwrap();
        serde_json::from_value::<api::NewToken>(sample(&schemas["NewToken"])).unwrap();
        serde_json::from_value::<api::BreakGlass>(sample(&schemas["BreakGlass"])).unwrap();
        serde_json::from_value::<api::ResolveFinding>(sample(&schemas["ResolveFinding"])).unwrap();
        use writ_api::wire::NewException;
        serde_json::from_value::<NewException>(sample(&schemas["NewException"])).unwrap();
        serde_json::from_value::<api::Renewal>(sample(&schemas["Renewal"])).unwrap();
    }
}
