//! List responses (RFC 7644 §3.4.2): filter, sort, paginate, and project the attributes asked
//! for (`attributes`, `excludedAttributes`).

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::filter::{self, AttrPath, Filter};
use crate::schema::{self, Kind, Returned};
use crate::{LIST_RESPONSE, Result, ScimError, ScimType};

/// A list request, read from its query parameters.
#[derive(Clone, Debug, Default)]
pub struct Query {
    pub filter: Option<Filter>,
    pub sort_by: Option<AttrPath>,
    pub descending: bool,
    /// 1-based; anything below 1 is read as 1 (§3.4.2.4).
    pub start_index: usize,
    /// `None`: up to the server's maximum; `Some(0)`: only `totalResults`.
    pub count: Option<usize>,
    pub projection: Projection,
}

/// `attributes` / `excludedAttributes`.
#[derive(Clone, Debug, Default)]
pub struct Projection {
    pub attributes: Vec<AttrPath>,
    pub excluded: Vec<AttrPath>,
}

fn param<'a>(params: &'a BTreeMap<String, String>, name: &str) -> Option<&'a str> {
    params.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

fn paths(kind: Kind, list: Option<&str>, what: &str) -> Result<Vec<AttrPath>> {
    let Some(list) = list else { return Ok(Vec::new()) };
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            let path = AttrPath::parse(s)
                .map_err(|e| ScimError::bad(ScimType::InvalidValue, format!("{what}: {e}")))?;
            schema::resolve(kind, &path)
                .map_err(|e| ScimError::bad(ScimType::InvalidValue, format!("{what}: {}", e.detail)))?;
            Ok(path)
        })
        .collect()
}

/// `attributes` and `excludedAttributes` from query parameters (any resource request).
pub fn projection(kind: Kind, params: &BTreeMap<String, String>) -> Result<Projection> {
    Ok(Projection {
        attributes: paths(kind, param(params, "attributes"), "attributes")?,
        excluded: paths(kind, param(params, "excludedAttributes"), "excludedAttributes")?,
    })
}

/// The parameters of a `POST …/.search` body (§3.4.3), as query parameters.
pub fn search_params(body: &Value) -> Result<BTreeMap<String, String>> {
    let object = body
        .as_object()
        .ok_or_else(|| ScimError::bad(ScimType::InvalidSyntax, "a search request must be a JSON object"))?;
    let mut params = BTreeMap::new();
    for (key, value) in object {
        let text = match value {
            Value::String(text) => text.clone(),
            Value::Number(n) => n.to_string(),
            Value::Array(items) => items.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(","),
            _ => continue,
        };
        if !key.eq_ignore_ascii_case("schemas") {
            params.insert(key.clone(), text);
        }
    }
    Ok(params)
}

/// Reads a list request's query parameters.
pub fn query(kind: Kind, params: &BTreeMap<String, String>) -> Result<Query> {
    let filter = match param(params, "filter") {
        Some(text) => {
            let parsed = filter::parse(text)?;
            filter::check(kind, &parsed)?;
            Some(parsed)
        }
        None => None,
    };
    let sort_by = match param(params, "sortBy") {
        Some(text) => {
            let path = AttrPath::parse(text)
                .map_err(|e| ScimError::bad(ScimType::InvalidValue, format!("sortBy: {e}")))?;
            schema::resolve(kind, &path)
                .map_err(|e| ScimError::bad(ScimType::InvalidValue, format!("sortBy: {}", e.detail)))?;
            Some(path)
        }
        None => None,
    };
    let descending = match param(params, "sortOrder").map(str::to_ascii_lowercase).as_deref() {
        None | Some("ascending") => false,
        Some("descending") => true,
        Some(_) => {
            return Err(ScimError::bad(ScimType::InvalidValue, "sortOrder must be ascending or descending"));
        }
    };
    let number = |name: &str| -> Result<Option<i64>> {
        param(params, name)
            .map(|v| {
                v.trim()
                    .parse::<i64>()
                    .map_err(|_| ScimError::bad(ScimType::InvalidValue, format!("{name} must be an integer")))
            })
            .transpose()
    };
    let start_index = usize::try_from(number("startIndex")?.unwrap_or(1).max(1)).unwrap_or(1);
    let count = number("count")?.map(|c| usize::try_from(c.max(0)).unwrap_or(0));
    Ok(Query { filter, sort_by, descending, start_index, count, projection: projection(kind, params)? })
}

/// The `ListResponse` for `resources` (full resources, with `id` and `meta`) under `query`;
/// at most `max_results` per page.
pub fn respond(
    kind: Kind,
    mut resources: Vec<Map<String, Value>>,
    query: &Query,
    max_results: usize,
) -> Value {
    if let Some(filter) = &query.filter {
        resources.retain(|r| filter::matches(kind, filter, r));
    }
    page(resources.into_iter().map(|r| (kind, r)).collect(), query, max_results)
}

/// The `ListResponse` of a search at the service provider's root (`POST /.search`): each
/// resource type answers with the part of the query it understands (a filter naming an
/// attribute only Users have finds no Group); the results are Users, then Groups.
pub fn respond_across(
    sets: Vec<(Kind, Vec<Map<String, Value>>)>,
    params: &BTreeMap<String, String>,
    max_results: usize,
) -> Result<Value> {
    let mut first_error = None;
    let mut found: Vec<(Kind, Map<String, Value>)> = Vec::new();
    let mut paging = None;
    for (kind, resources) in sets {
        let query = match query(kind, params) {
            Ok(query) => query,
            Err(error) => {
                first_error.get_or_insert(error);
                continue;
            }
        };
        let mut resources = resources;
        if let Some(filter) = &query.filter {
            resources.retain(|r| filter::matches(kind, filter, r));
        }
        found.extend(resources.into_iter().map(|r| (kind, r)));
        paging.get_or_insert(query);
    }
    let Some(query) = paging else {
        return Err(
            first_error.unwrap_or_else(|| ScimError::bad(ScimType::InvalidValue, "nothing to search"))
        );
    };
    Ok(page(found, &query, max_results))
}

/// Sorts, pages and projects resources (each with its type) into a `ListResponse`. With
/// count=0 the page is empty: no resource, only the total (§3.4.2.4).
fn page(mut found: Vec<(Kind, Map<String, Value>)>, query: &Query, max_results: usize) -> Value {
    if let Some(path) = &query.sort_by {
        found.sort_by(|(kind, a), (_, b)| {
            let order = filter::order(*kind, path, a, b);
            if query.descending { order.reverse() } else { order }
        });
    }
    let total = found.len();
    let count = query.count.unwrap_or(max_results).min(max_results);
    let page: Vec<Value> = found
        .into_iter()
        .skip(query.start_index.saturating_sub(1))
        .take(count)
        .map(|(kind, r)| Value::Object(project(kind, r, &query.projection)))
        .collect();
    json!({
        "schemas": [LIST_RESPONSE],
        "totalResults": total,
        "startIndex": query.start_index,
        "itemsPerPage": page.len(),
        "Resources": page,
    })
}

/// `resource` with only what `projection` asks for (attributes returned `always` stay).
pub fn project(kind: Kind, resource: Map<String, Value>, projection: &Projection) -> Map<String, Value> {
    let mut out = if projection.attributes.is_empty() {
        resource
    } else {
        let mut kept = Map::new();
        for key in ["schemas", "id"] {
            if let Some(value) = resource.get(key) {
                kept.insert(key.to_owned(), value.clone());
            }
        }
        for path in &projection.attributes {
            copy(kind, &resource, &mut kept, path);
        }
        kept
    };
    for path in &projection.excluded {
        let Ok(resolved) = schema::resolve(kind, path) else { continue };
        if resolved.attr.returned == Returned::Always {
            continue;
        }
        let holder = match resolved.extension {
            Some(extension) => out.get_mut(extension.id).and_then(Value::as_object_mut),
            None => Some(&mut out),
        };
        if let Some(holder) = holder {
            match &path.sub {
                None => {
                    holder.remove(resolved.attr.name);
                }
                Some(sub) => strip_sub(holder.get_mut(resolved.attr.name), sub),
            }
        }
    }
    out
}

fn strip_sub(value: Option<&mut Value>, sub: &str) {
    match value {
        Some(Value::Object(object)) => {
            object.retain(|k, _| !k.eq_ignore_ascii_case(sub));
        }
        Some(Value::Array(items)) => {
            for item in items.iter_mut().filter_map(Value::as_object_mut) {
                item.retain(|k, _| !k.eq_ignore_ascii_case(sub));
            }
        }
        _ => {}
    }
}

fn copy(kind: Kind, from: &Map<String, Value>, to: &mut Map<String, Value>, path: &AttrPath) {
    let Ok(resolved) = schema::resolve(kind, path) else { return };
    let (source, target) = match resolved.extension {
        Some(extension) => {
            let Some(source) = from.get(extension.id).and_then(Value::as_object) else { return };
            let entry = to.entry(extension.id.to_owned()).or_insert_with(|| Value::Object(Map::new()));
            let Some(target) = entry.as_object_mut() else { return };
            (source, target)
        }
        None => (from, to),
    };
    let name = resolved.attr.name;
    let Some(value) = source.get(name) else { return };
    let Some(sub) = resolved.sub else {
        target.insert(name.to_owned(), value.clone());
        return;
    };
    let pick = |v: &Value| -> Option<Value> {
        let picked = v.as_object()?.get(sub.name)?;
        Some(json!({ sub.name: picked }))
    };
    let picked = match value {
        Value::Array(items) => Value::Array(items.iter().filter_map(pick).collect()),
        single => match pick(single) {
            Some(v) => v,
            None => return,
        },
    };
    match (target.get_mut(name), picked) {
        (Some(Value::Object(existing)), Value::Object(new)) => existing.extend(new),
        (_, picked) => {
            target.insert(name.to_owned(), picked);
        }
    }
}
