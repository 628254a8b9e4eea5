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
        "NewTarget": schema::<wire::NewTarget>(),
        "NewChange": schema::<wire::NewChange>(),
        "StepBody": schema::<wire::StepBody>(),
        "BreakGlass": schema::<wire::BreakGlass>(),
        "ResolveFinding": schema::<wire::ResolveFinding>(),
        "NewException": schema::<wire::NewException>(),
        "ExceptionStep": schema::<wire::ExceptionStep>(),
        "NewToken": schema::<wire::NewToken>(),
        "Error": {
            "type": "object", "required": ["error"],
            "properties": { "error": {
                "type": "object", "required": ["code", "message"],
                "properties": { "code": { "type": "string" }, "message": { "type": "string" }, "field": { "type": "string" } }
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
            let types = match &property["type"] {
                Value::Array(types) => types.iter().filter_map(Value::as_str).collect::<Vec<_>>(),
                other => vec![other.as_str().unwrap()],
            };
            let value = if types.contains(&"array") {
                json!(["x"])
            } else if types.contains(&"object") {
                json!({})
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
        for (name, schema) in schemas.as_object().unwrap() {
            if name != "Error" {
                assert_eq!(schema["additionalProperties"], false, "{name} must refuse unknown fields");
            }
        }
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
