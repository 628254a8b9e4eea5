//! The Cedar half: parse every `*.cedar` file, give each policy its `@id`, validate strictly
//! against Writ's schema, and answer authorization requests built from a change's facts.

use std::collections::BTreeMap;
use std::str::FromStr;

use cedar_policy::{
    Authorizer, Context, Decision, Entities, EntityUid, PolicyId, PolicySet, Request, Schema, ValidationMode,
    Validator,
};
use miette::Diagnostic;
use serde_json::{Value, json};

use crate::rules::{Rules, line_of};
use crate::{Act, ChangeFacts, Denial, Person, PolicyError};

const SCHEMA: &str = include_str!("writ.cedarschema");

pub(crate) struct Compiled {
    schema: Schema,
    set: PolicySet,
    controls: BTreeMap<String, Vec<String>>,
    authorizer: Authorizer,
}

impl Compiled {
    pub(crate) fn new(files: &BTreeMap<String, String>) -> Result<Compiled, PolicyError> {
        let (schema, _) = Schema::from_cedarschema_str(SCHEMA)
            .map_err(|e| PolicyError::invalid("writ.cedarschema", 0, &e.to_string()))?;
        let mut set = PolicySet::new();
        let mut controls = BTreeMap::new();
        let mut origin: BTreeMap<String, String> = BTreeMap::new();
        for (name, text) in files.iter().filter(|(n, _)| n.ends_with(".cedar")) {
            let parsed = PolicySet::from_str(text).map_err(|e| {
                let line = first_label(&e).map_or(0, |at| line_of(text, at));
                PolicyError::invalid(name, line, &one_line(&e.to_string(), &e))
            })?;
            if parsed.templates().next().is_some() {
                return Err(PolicyError::invalid(
                    name,
                    0,
                    "templates are not supported; write plain policies",
                ));
            }
            let starts = statement_lines(text);
            let mut policies: Vec<_> = parsed.policies().collect();
            policies.sort_by_key(|p| {
                p.id().to_string().trim_start_matches("policy").parse::<usize>().unwrap_or(0)
            });
            for (n, policy) in policies.into_iter().enumerate() {
                let line = starts.get(n).copied().unwrap_or(0);
                let Some(id) = policy.annotation("id").map(str::to_owned) else {
                    return Err(PolicyError::invalid(
                        name,
                        line,
                        "policy has no @id(\"…\"); every policy needs a unique id",
                    ));
                };
                if origin.contains_key(&id) || id.is_empty() {
                    return Err(PolicyError::invalid(name, line, &format!("policy id {id:?} is used twice")));
                }
                let named = policy.new_id(PolicyId::new(&id));
                set.add(named).map_err(|e| PolicyError::invalid(name, line, &e.to_string()))?;
                let listed = policy
                    .annotations()
                    .filter(|(k, _)| *k == "controls")
                    .flat_map(|(_, v)| v.split(',').map(|c| c.trim().to_owned()))
                    .filter(|c| !c.is_empty())
                    .collect();
                controls.insert(id.clone(), listed);
                origin.insert(id, name.clone());
            }
        }
        let result = Validator::new(schema.clone()).validate(&set, ValidationMode::Strict);
        if let Some(error) = result.validation_errors().next() {
            let id = error.policy_id().to_string();
            let file = origin.get(&id).cloned().unwrap_or_default();
            let text = files.get(&file).map_or("", String::as_str);
            let line = first_label(error).map_or(0, |at| line_of(text, at));
            return Err(PolicyError::invalid(
                &file,
                line,
                &format!("policy {id:?}: {}", one_line(&error.to_string(), error)),
            ));
        }
        Ok(Compiled { schema, set, controls, authorizer: Authorizer::new() })
    }

    pub(crate) fn listing(&self) -> Vec<(String, Vec<String>)> {
        self.controls.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    pub(crate) fn controls(&self, id: &str) -> Vec<String> {
        self.controls.get(id).cloned().unwrap_or_default()
    }

    pub(crate) fn authorize(
        &self,
        act: Act,
        principal: &Person,
        facts: &ChangeFacts,
        on_behalf_of: Option<&Person>,
        rules: &Rules,
    ) -> Result<Vec<String>, Denial> {
        let internal = |detail: String| Denial {
            code: "policy.evaluation_error",
            rule: None,
            reason: format!("policy could not be evaluated, so the action is refused: {detail}"),
        };
        let action = EntityUid::from_str(&format!("Writ::Action::{:?}", act.as_str()))
            .map_err(|e| internal(e.to_string()))?;
        let principal_uid = uid(&principal.name).map_err(&internal)?;
        let change_uid =
            EntityUid::from_str("Writ::Change::\"change\"").map_err(|e| internal(e.to_string()))?;
        let mut people: BTreeMap<&str, &Person> = BTreeMap::new();
        for person in std::iter::once(principal)
            .chain(std::iter::once(&facts.requester))
            .chain(facts.on_behalf_of.iter())
            .chain(on_behalf_of)
            .chain(facts.ops.iter().map(|op| &op.identity))
        {
            people.entry(person.name.as_str()).or_insert(person);
        }
        let mut entities: Vec<Value> = people.values().map(|p| identity_entity(p, rules)).collect();
        entities.push(change_entity(facts, rules));
        // Writ builds these entities itself, in the schema's shape (a unit test checks them
        // against the schema); checking every decision's entities again would double its cost.
        // The request itself is still checked against the schema below.
        let entities =
            Entities::from_json_value(Value::Array(entities), None).map_err(|e| internal(e.to_string()))?;
        let context =
            json!({ "on_behalf_of": on_behalf_of.iter().map(|p| reference(&p.name)).collect::<Vec<_>>() });
        let context = Context::from_json_value(context, None).map_err(|e| internal(e.to_string()))?;
        let request = Request::new(principal_uid, action, change_uid, context, Some(&self.schema))
            .map_err(|e| internal(e.to_string()))?;
        let response = self.authorizer.is_authorized(&request, &self.set, &entities);
        let diagnostics = response.diagnostics();
        if let Some(error) = diagnostics.errors().next() {
            // A policy that errors is skipped by Cedar, so a forbid could silently stop
            // forbidding: any error is a denial.
            return Err(internal(error.to_string()));
        }
        let deciding: Vec<String> = diagnostics.reason().map(ToString::to_string).collect();
        match response.decision() {
            Decision::Allow => Ok(deciding),
            Decision::Deny => Err(match deciding.first() {
                Some(forbid) => Denial {
                    code: "policy.forbidden",
                    rule: Some(forbid.clone()),
                    reason: format!("{} may not {} this change", principal.name, act.as_str()),
                },
                None => Denial {
                    code: "policy.not_permitted",
                    rule: None,
                    reason: format!("no policy permits {} to {} this change", principal.name, act.as_str()),
                },
            }),
        }
    }
}

/// The entities and context of one decision, as JSON (for the schema check in tests).
#[cfg(test)]
pub(crate) fn decision_json(
    principal: &Person,
    facts: &ChangeFacts,
    on_behalf_of: Option<&Person>,
    rules: &Rules,
) -> (Value, Value) {
    let mut entities: Vec<Value> =
        vec![identity_entity(principal, rules), identity_entity(&facts.requester, rules)];
    entities.extend(on_behalf_of.map(|p| identity_entity(p, rules)));
    entities.push(change_entity(facts, rules));
    let context =
        json!({ "on_behalf_of": on_behalf_of.iter().map(|p| reference(&p.name)).collect::<Vec<_>>() });
    (Value::Array(entities), context)
}

#[cfg(test)]
pub(crate) fn schema() -> Schema {
    Schema::from_cedarschema_str(SCHEMA).map(|(s, _)| s).unwrap_or_else(|e| panic!("{e}"))
}

fn uid(name: &str) -> Result<EntityUid, String> {
    EntityUid::from_json(reference(name).get("__entity").cloned().unwrap_or(Value::Null))
        .map_err(|e| e.to_string())
}

fn reference(name: &str) -> Value {
    json!({ "__entity": { "type": "Writ::Identity", "id": name } })
}

fn identity_entity(person: &Person, rules: &Rules) -> Value {
    let mut attrs = serde_json::Map::new();
    attrs.insert("kind".into(), json!(person.kind));
    if let Some(vendor) = &person.vendor {
        attrs.insert("vendor".into(), json!(vendor));
    }
    if let Some(owner) = &person.owner {
        attrs.insert("owner".into(), reference(owner));
    }
    let mut groups: Vec<&str> = rules.groups_of(&person.name);
    groups.extend(person.groups.iter().map(String::as_str));
    groups.sort_unstable();
    groups.dedup();
    let parents: Vec<Value> = groups.into_iter().map(|g| json!({ "type": "Writ::Group", "id": g })).collect();
    json!({ "uid": { "type": "Writ::Identity", "id": person.name }, "attrs": attrs, "parents": parents })
}

fn change_entity(facts: &ChangeFacts, rules: &Rules) -> Value {
    let refs = |names: &mut dyn Iterator<Item = &str>| {
        let mut names: Vec<&str> = names.collect();
        names.sort_unstable();
        names.dedup();
        names.into_iter().map(reference).collect::<Vec<_>>()
    };
    let privileged = facts.ops.iter().any(|op| rules.classify(&op.entitlement).0);
    let mut attrs = serde_json::Map::new();
    attrs.insert("kind".into(), json!(facts.kind));
    attrs.insert("event".into(), json!(facts.event));
    attrs.insert("tier".into(), json!(facts.tier));
    attrs.insert("emergency".into(), json!(facts.emergency));
    attrs.insert("privileged".into(), json!(privileged));
    attrs.insert("has_ticket".into(), json!(facts.has_ticket));
    attrs.insert("requester".into(), reference(&facts.requester.name));
    attrs.insert("on_behalf_of".into(), json!(refs(&mut facts.on_behalf_of.iter().map(|p| p.name.as_str()))));
    attrs.insert(
        "beneficiaries".into(),
        json!(refs(&mut facts.ops.iter().map(|op| op.identity.name.as_str()))),
    );
    attrs.insert("owners".into(), json!(refs(&mut facts.ops.iter().filter_map(|op| op.owner.as_deref()))));
    attrs.insert("approvers".into(), json!(refs(&mut facts.approvers.iter().map(String::as_str))));
    attrs.insert("executors".into(), json!(refs(&mut facts.executors.iter().map(String::as_str))));
    if let Some(vendor) = &facts.vendor {
        attrs.insert("vendor".into(), json!(vendor));
    }
    json!({ "uid": { "type": "Writ::Change", "id": "change" }, "attrs": attrs, "parents": [] })
}

/// The byte offset of the first labelled span of a diagnostic.
fn first_label(diagnostic: &dyn Diagnostic) -> Option<usize> {
    diagnostic
        .labels()
        .and_then(|mut labels| labels.next())
        .map(|l| l.offset())
        .or_else(|| diagnostic.related().and_then(|mut related| related.find_map(first_label)))
}

/// An error message on one line, with the diagnostic's help if it has one.
fn one_line(message: &str, diagnostic: &dyn Diagnostic) -> String {
    let mut text = message.split_whitespace().collect::<Vec<_>>().join(" ");
    if let Some(help) = diagnostic.help() {
        text.push_str("; ");
        text.push_str(&help.to_string().split_whitespace().collect::<Vec<_>>().join(" "));
    }
    text
}

/// The line where each `permit`/`forbid` statement starts (counting its annotations), in file
/// order: Cedar numbers the policies of a file in the same order.
fn statement_lines(text: &str) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut pending: Option<usize> = None;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.starts_with('@') {
            pending.get_or_insert(i + 1);
        } else if trimmed.starts_with("permit") || trimmed.starts_with("forbid") {
            starts.push(pending.take().unwrap_or(i + 1));
        }
    }
    starts
}
