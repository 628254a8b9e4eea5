//! The OpenAPI 3.1 document at `/api/v1/openapi.json`, generated from the same operation table
//! the router is built from (`routes::operations`), so the two cannot drift apart.

use serde_json::{Map, Value, json};

use crate::http::Operation;

/// Request body schemas, by the name the operation table uses. Each lists exactly the fields
/// of the matching struct in `writ_api::wire` (a test deserialises every listed field).
pub fn schemas() -> Value {
    let string = json!({ "type": "string" });
    let strings = json!({ "type": "array", "items": { "type": "string" } });
    json!({
        "NewIdentity": {
            "type": "object", "additionalProperties": false, "required": ["name", "kind"],
            "properties": {
                "name": string, "kind": { "type": "string", "enum": ["human", "service_account", "api_key", "secret", "certificate", "workload", "ai_agent"] },
                "owner": string, "vendor": string
            }
        },
        "NewTarget": {
            "type": "object", "additionalProperties": false, "required": ["name", "connector"],
            "properties": {
                "name": string, "connector": string,
                "settings": { "type": "object", "additionalProperties": { "type": "string" } }
            }
        },
        "NewChange": {
            "type": "object", "additionalProperties": false, "required": ["identity", "justification"],
            "properties": {
                "identity": string, "grant": strings, "revoke": strings, "rotate": strings,
                "for": { "type": "string", "description": "time-bound grants, e.g. 8h" },
                "justification": string, "ticket": strings, "commit": strings, "pr": strings,
                "event": string, "on_behalf_of": string
            }
        },
        "StepBody": {
            "type": "object", "additionalProperties": false,
            "properties": { "valid_for": string, "on_behalf_of": string, "reason": string, "notes": string }
        },
        "BreakGlass": {
            "type": "object", "additionalProperties": false, "required": ["grant", "reason"],
            "properties": {
                "identity": { "type": "string", "description": "who gets access (default: the caller)" },
                "grant": strings,
                "for": { "type": "string", "description": "at most the policy's [breakglass] max_duration" },
                "reason": string, "ticket": strings
            }
        },
        "ResolveFinding": {
            "type": "object", "additionalProperties": false, "required": ["note"],
            "properties": { "note": string }
        },
        "NewException": {
            "type": "object", "additionalProperties": false,
            "required": ["owner", "justification", "compensating_control"],
            "properties": {
                "finding": { "type": "string", "description": "take control and subject from this finding" },
                "control": { "type": "string", "description": "the finding kind of the control not met" },
                "subject": { "type": "string", "description": "what the findings name: identity, change ID, TARGET:ENTITLEMENT" },
                "owner": string, "justification": string, "compensating_control": string,
                "for": { "type": "string", "description": "term from now, e.g. 30d (or give until)" },
                "until": { "type": "string", "format": "date-time" }
            }
        },
        "ExceptionStep": {
            "type": "object", "additionalProperties": false,
            "properties": {
                "reason": { "type": "string", "description": "required to reject, renew or revoke" },
                "for": { "type": "string", "description": "renew: the new term from now" },
                "until": { "type": "string", "format": "date-time", "description": "renew: the new end" }
            }
        },
        "NewToken": {
            "type": "object", "additionalProperties": false, "required": ["identity", "label"],
            "properties": { "identity": string, "label": string, "expires_in": string }
        },
        "Error": {
            "type": "object", "required": ["error"],
            "properties": { "error": {
                "type": "object", "required": ["code", "message"],
                "properties": { "code": string, "message": string, "field": string }
            } }
        }
    })
}

/// The document for `operations` (every operation the router serves).
pub fn document_value(operations: &[Operation]) -> Value {
    let mut paths: Map<String, Value> = Map::new();
    for operation in operations {
        let mut responses = json!({
            "200": { "description": "OK", "content": { "application/json": {} } },
            "400": { "$ref": "#/components/responses/Error" },
            "401": { "$ref": "#/components/responses/Error" },
            "403": { "$ref": "#/components/responses/Error" },
            "404": { "$ref": "#/components/responses/Error" },
            "409": { "$ref": "#/components/responses/Error" },
            "413": { "$ref": "#/components/responses/Error" },
            "503": { "$ref": "#/components/responses/Error" }
        });
        if operation.roles.is_empty() {
            responses =
                json!({ "200": { "description": "OK" }, "503": { "$ref": "#/components/responses/Error" } });
        }
        let roles: Vec<&str> = operation.roles.iter().map(|r| r.as_str()).collect();
        let mut entry = json!({
            "summary": operation.summary,
            "responses": responses,
            "x-writ-roles": roles,
        });
        let parameters: Vec<Value> = path_parameters(operation.path)
            .into_iter()
            .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
            .chain(operation.idempotent.then(|| {
                json!({ "name": "Idempotency-Key", "in": "header", "required": false, "schema": { "type": "string", "maxLength": 255 } })
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
                    object.insert("requestBody".into(), json!({ "required": true, "content": { "application/octet-stream": { "schema": { "type": "string", "format": "binary" } } } }));
                }
                Some(schema) => {
                    object.insert("requestBody".into(), json!({ "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } } }));
                }
                None => {}
            }
        }
        let method = operation.method.as_str().to_ascii_lowercase();
        if let Some(path) = paths.entry(operation.path).or_insert_with(|| json!({})).as_object_mut() {
            path.insert(method, entry);
        }
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
            "schemas": schemas(),
            "responses": { "Error": { "description": "An error with a stable code", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } } }
        }
    })
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
        for (name, property) in schema["properties"].as_object().unwrap() {
            let value = match property["type"].as_str().unwrap() {
                "array" => json!(["x"]),
                "object" => json!({}),
                _ => json!("x"),
            };
            object.insert(name.clone(), value);
        }
        Value::Object(object)
    }

    #[test]
    fn every_schema_property_is_a_field_of_its_struct() {
        let schemas = schemas();
        serde_json::from_value::<api::NewIdentity>(sample(&schemas["NewIdentity"])).unwrap();
        serde_json::from_value::<api::NewTarget>(sample(&schemas["NewTarget"])).unwrap();
        serde_json::from_value::<api::NewChange>(sample(&schemas["NewChange"])).unwrap();
        serde_json::from_value::<api::StepBody>(sample(&schemas["StepBody"])).unwrap();
        serde_json::from_value::<api::NewToken>(sample(&schemas["NewToken"])).unwrap();
        serde_json::from_value::<api::BreakGlass>(sample(&schemas["BreakGlass"])).unwrap();
        serde_json::from_value::<api::ResolveFinding>(sample(&schemas["ResolveFinding"])).unwrap();
        use writ_api::wire::{ExceptionStep, NewException};
        serde_json::from_value::<NewException>(sample(&schemas["NewException"])).unwrap();
        serde_json::from_value::<ExceptionStep>(sample(&schemas["ExceptionStep"])).unwrap();
    }
}
