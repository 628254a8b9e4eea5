//! PATCH (RFC 7644 §3.5.2): operations read leniently (`Add`, `Replace` in any case, as Entra
//! sends them; no path with an object value, whose keys may themselves be paths such as
//! `name.givenName` or a URN-qualified attribute), applied in order to a copy of the resource.
//! Any failing operation fails the whole request and the resource is left as it was.

use serde_json::{Map, Value};

use crate::filter::{self, AttrPath, Filter};
use crate::schema::{self, Kind, Mutability, Type};
use crate::{PATCH_OP, Result, ScimError, ScimType};

/// Most operations one request may carry.
pub const MAX_OPERATIONS: usize = 1000;

/// `add`, `remove` or `replace`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpKind {
    Add,
    Remove,
    Replace,
}

/// A PATCH path: `attr`, `attr.sub`, `attr[filter]` or `attr[filter].sub`.
#[derive(Clone, Debug, PartialEq)]
pub struct PatchPath {
    pub attr: AttrPath,
    pub filter: Option<Filter>,
}

/// One operation.
#[derive(Clone, Debug, PartialEq)]
pub struct Operation {
    pub op: OpKind,
    pub path: Option<PatchPath>,
    pub value: Option<Value>,
}

fn syntax(detail: impl Into<String>) -> ScimError {
    ScimError::bad(ScimType::InvalidSyntax, detail)
}

/// Reads a PATCH body: `schemas` must name the PatchOp message, `Operations` must be a list.
pub fn parse(body: &Value) -> Result<Vec<Operation>> {
    let object = body.as_object().ok_or_else(|| syntax("a PATCH body must be a JSON object"))?;
    let schemas = filter::field(object, "schemas").and_then(Value::as_array);
    if !schemas
        .is_some_and(|s| s.iter().any(|u| u.as_str().is_some_and(|u| u.eq_ignore_ascii_case(PATCH_OP))))
    {
        return Err(syntax(format!("a PATCH body's schemas must be [\"{PATCH_OP}\"]")));
    }
    let operations = filter::field(object, "Operations")
        .and_then(Value::as_array)
        .ok_or_else(|| syntax("a PATCH body needs an Operations list"))?;
    if operations.is_empty() || operations.len() > MAX_OPERATIONS {
        return Err(syntax(format!("a PATCH body carries 1 to {MAX_OPERATIONS} operations")));
    }
    operations.iter().enumerate().map(|(i, op)| operation(op).map_err(|e| numbered(e, i))).collect()
}

fn numbered(error: ScimError, index: usize) -> ScimError {
    ScimError { detail: format!("operation {}: {}", index + 1, error.detail), ..error }
}

fn operation(input: &Value) -> Result<Operation> {
    let object = input.as_object().ok_or_else(|| syntax("an operation must be an object"))?;
    let op = match filter::field(object, "op").and_then(Value::as_str).map(str::to_ascii_lowercase).as_deref()
    {
        Some("add") => OpKind::Add,
        Some("remove") => OpKind::Remove,
        Some("replace") => OpKind::Replace,
        _ => return Err(syntax("op must be add, remove or replace")),
    };
    let path = match filter::field(object, "path") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(parse_path(text)?),
        Some(_) => return Err(ScimError::bad(ScimType::InvalidPath, "path must be a string")),
    };
    let value = filter::field(object, "value").filter(|v| !v.is_null()).cloned();
    match (op, &path, &value) {
        (OpKind::Remove, None, _) => Err(ScimError::bad(ScimType::NoTarget, "remove needs a path")),
        (OpKind::Add | OpKind::Replace, _, None) => Err(syntax("add and replace need a value")),
        (OpKind::Add | OpKind::Replace, None, Some(v)) if !v.is_object() => {
            Err(syntax("without a path, the value must be an object of attributes"))
        }
        _ => Ok(Operation { op, path, value }),
    }
}

/// Parses `attr`, `attr.sub`, `attr[filter]` or `attr[filter].sub` (each optionally prefixed
/// by a schema URN).
pub fn parse_path(input: &str) -> Result<PatchPath> {
    let bad = |why: String| ScimError::bad(ScimType::InvalidPath, format!("path {input:?}: {why}"));
    let Some(open) = input.find('[') else {
        return Ok(PatchPath { attr: AttrPath::parse(input.trim()).map_err(bad)?, filter: None });
    };
    let close = input.rfind(']').filter(|&c| c > open).ok_or_else(|| bad("\"[\" is not closed".into()))?;
    let attr = AttrPath::parse(input.get(..open).unwrap_or_default().trim()).map_err(bad)?;
    if attr.sub.is_some() {
        return Err(bad("a value filter applies to an attribute, not a sub-attribute".into()));
    }
    let inner = filter::parse(input.get(open + 1..close).unwrap_or_default()).map_err(|e| bad(e.detail))?;
    let sub = match input.get(close + 1..).unwrap_or_default() {
        "" => None,
        rest => match rest.strip_prefix('.') {
            Some(sub) => Some(AttrPath::parse(sub).map_err(bad)?.name),
            None => return Err(bad(format!("unexpected {rest:?} after \"]\""))),
        },
    };
    Ok(PatchPath { attr: AttrPath { sub, ..attr }, filter: Some(inner) })
}

/// Applies `ops` in order to a copy of `doc` (a stored resource: attributes only, no `id` or
/// `meta`) and returns it normalised. Nothing is changed if any operation fails.
pub fn apply(kind: Kind, doc: &Map<String, Value>, ops: &[Operation]) -> Result<Map<String, Value>> {
    let mut work = doc.clone();
    for (i, op) in ops.iter().enumerate() {
        apply_one(kind, &mut work, op).map_err(|e| numbered(e, i))?;
    }
    schema::normalize(kind, &Value::Object(work))
}

fn apply_one(kind: Kind, work: &mut Map<String, Value>, op: &Operation) -> Result<()> {
    match (&op.path, &op.value) {
        (Some(path), value) => at_path(kind, work, op.op, path, value.as_ref()),
        (None, Some(Value::Object(fields))) => {
            for (key, value) in fields {
                if let Some(extension) = kind.extensions().iter().find(|s| s.id.eq_ignore_ascii_case(key)) {
                    let Some(nested) = value.as_object() else {
                        return Err(ScimError::bad(
                            ScimType::InvalidValue,
                            format!("{key} must be an object"),
                        ));
                    };
                    for (name, value) in nested {
                        // Only the extension's attributes; anything else (a `schemas` key) is
                        // ignored, as on create.
                        let Ok(path) = AttrPath::parse(name) else { continue };
                        let path = AttrPath { uri: Some(extension.id.to_owned()), ..path };
                        if schema::resolve(kind, &path).is_ok() {
                            at_path(kind, work, op.op, &PatchPath { attr: path, filter: None }, Some(value))?;
                        }
                    }
                    continue;
                }
                let Ok(path) = AttrPath::parse(key) else { continue };
                // Read-only and unknown attributes in a merged object are ignored, as on create.
                if schema::resolve(kind, &path).is_ok_and(|r| r.attr.mutability != Mutability::ReadOnly) {
                    at_path(kind, work, op.op, &PatchPath { attr: path, filter: None }, Some(value))?;
                }
            }
            Ok(())
        }
        (None, _) => Err(ScimError::bad(ScimType::NoTarget, "this operation needs a path")),
    }
}

fn at_path(
    kind: Kind,
    work: &mut Map<String, Value>,
    op: OpKind,
    path: &PatchPath,
    value: Option<&Value>,
) -> Result<()> {
    // The path is an extension's URN: the operation is on the extension as a whole.
    let whole_extension = match (&path.attr.uri, &path.attr.sub, &path.filter) {
        (Some(uri), None, None) => {
            let urn = format!("{uri}:{}", path.attr.name);
            kind.extensions().iter().find(|s| s.id.eq_ignore_ascii_case(&urn)).copied()
        }
        _ => None,
    };
    if let Some(extension) = whole_extension {
        return match (op, value) {
            (OpKind::Remove, _) => {
                work.remove(extension.id);
                Ok(())
            }
            (_, Some(value)) => {
                let wrapped = Value::Object(Map::from_iter([(extension.id.to_owned(), value.clone())]));
                apply_one(kind, work, &Operation { op, path: None, value: Some(wrapped) })
            }
            (_, None) => Err(syntax("add and replace need a value")),
        };
    }
    let resolved = schema::resolve(kind, &path.attr)?;
    let attr = resolved.attr;
    if attr.mutability == Mutability::ReadOnly
        || resolved.sub.is_some_and(|s| s.mutability == Mutability::ReadOnly)
    {
        return Err(ScimError::bad(ScimType::Mutability, format!("{} is read-only", path.attr)));
    }
    let holder = match resolved.extension {
        Some(extension) => {
            let entry = work.entry(extension.id.to_owned()).or_insert_with(|| Value::Object(Map::new()));
            if !entry.is_object() {
                *entry = Value::Object(Map::new());
            }
            match entry.as_object_mut() {
                Some(object) => object,
                None => return Err(ScimError::status(500, "extension is not an object")),
            }
        }
        None => work,
    };
    let key = attr.name.to_owned();
    // Entra sends a manager as its id alone.
    let value = match value {
        Some(Value::String(id))
            if attr.ty == Type::Complex
                && !attr.multi
                && path.attr.sub.is_none()
                && attr.sub("value").is_some() =>
        {
            Some(serde_json::json!({ "value": id }))
        }
        other => other.cloned(),
    };
    match (&path.filter, &path.attr.sub) {
        (None, None) => whole(holder, &key, attr.multi, op, value),
        (None, Some(sub)) if !attr.multi => {
            let entry = holder.entry(key).or_insert_with(|| Value::Object(Map::new()));
            let Some(object) = entry.as_object_mut() else {
                return Err(ScimError::bad(ScimType::InvalidPath, format!("{} is not complex", path.attr)));
            };
            set_or_remove(object, sub, op, value);
            Ok(())
        }
        (filter, sub) => {
            if !attr.multi || attr.ty != Type::Complex {
                return Err(ScimError::bad(
                    ScimType::InvalidPath,
                    format!("{}: a value filter needs a multi-valued complex attribute", path.attr),
                ));
            }
            let parent = AttrPath { sub: None, ..path.attr.clone() };
            let items = holder.get_mut(&key).and_then(Value::as_array_mut);
            let mut matched = 0usize;
            let mut kept = Vec::new();
            for item in items.map(std::mem::take).unwrap_or_default() {
                let hit = match (filter, item.as_object()) {
                    (Some(filter), Some(object)) => filter::matches_value(kind, filter, &parent, object),
                    (None, _) => true,
                    _ => false,
                };
                if !hit {
                    kept.push(item);
                    continue;
                }
                matched += 1;
                match (op, sub, item) {
                    (OpKind::Remove, None, _) => {}
                    (_, Some(sub), Value::Object(mut object)) => {
                        set_or_remove(&mut object, sub, op, value.clone());
                        kept.push(Value::Object(object));
                    }
                    (_, None, Value::Object(mut object)) => {
                        if let Some(Value::Object(fields)) = &value {
                            object.extend(fields.clone());
                        } else {
                            return Err(ScimError::bad(
                                ScimType::InvalidValue,
                                format!("{}: the value must be an object", path.attr),
                            ));
                        }
                        kept.push(Value::Object(object));
                    }
                    (_, _, other) => kept.push(other),
                }
            }
            if matched == 0 && op != OpKind::Remove {
                return Err(ScimError::bad(
                    ScimType::NoTarget,
                    format!("no value of {} matches the path's filter", parent),
                ));
            }
            if kept.is_empty() {
                holder.remove(&key);
            } else {
                holder.insert(key, Value::Array(kept));
            }
            Ok(())
        }
    }
}

/// An operation on a whole attribute.
fn whole(
    holder: &mut Map<String, Value>,
    key: &str,
    multi: bool,
    op: OpKind,
    value: Option<Value>,
) -> Result<()> {
    match (op, value) {
        (OpKind::Remove, Some(Value::Array(drop))) if multi => {
            // `remove members` with the members to remove as the value (Entra, Okta).
            let identity = |v: &Value| v.get("value").cloned().unwrap_or_else(|| v.clone());
            let drop: Vec<Value> = drop.iter().map(identity).collect();
            if let Some(Value::Array(items)) = holder.get_mut(key) {
                items.retain(|item| !drop.contains(&identity(item)));
                if items.is_empty() {
                    holder.remove(key);
                }
            }
        }
        (OpKind::Remove, _) => {
            holder.remove(key);
        }
        (OpKind::Add, Some(value)) if multi => {
            let mut items = match holder.remove(key) {
                Some(Value::Array(items)) => items,
                Some(other) => vec![other],
                None => Vec::new(),
            };
            let new = match value {
                Value::Array(new) => new,
                single => vec![single],
            };
            for value in new {
                // Adding a value already there is not an error (§3.5.2.1).
                if !items.contains(&value) {
                    items.push(value);
                }
            }
            holder.insert(key.to_owned(), Value::Array(items));
        }
        (_, Some(Value::Object(fields))) if !multi && holder.get(key).is_some_and(Value::is_object) => {
            if let Some(Value::Object(existing)) = holder.get_mut(key) {
                existing.extend(fields);
            }
        }
        (_, Some(value)) => {
            holder.insert(key.to_owned(), value);
        }
        (_, None) => return Err(syntax("add and replace need a value")),
    }
    Ok(())
}

fn set_or_remove(object: &mut Map<String, Value>, sub: &str, op: OpKind, value: Option<Value>) {
    let key = object.keys().find(|k| k.eq_ignore_ascii_case(sub)).cloned().unwrap_or_else(|| sub.to_owned());
    match (op, value) {
        (OpKind::Remove, _) | (_, None) => {
            object.remove(&key);
        }
        (_, Some(value)) => {
            object.insert(key, value);
        }
    }
}
