//! The Cedar half: parse every `*.cedar` file, give each policy its `@id`, validate strictly
//! against Writ's schema, and answer authorization requests built from a change's facts.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::str::FromStr;

use cedar_policy::{
    Authorizer, Context, Decision, Entities, Entity, EntityId, EntityTypeName, EntityUid, PolicyId,
    PolicySet, Request, RestrictedExpression, Schema, ValidationMode, Validator,
};
use miette::Diagnostic;

use crate::rules::{Rules, line_of};
use crate::{Act, ChangeFacts, Denial, Person, PolicyError};

const SCHEMA: &str = include_str!("writ.cedarschema");

pub(crate) struct Compiled {
    schema: Schema,
    set: PolicySet,
    controls: BTreeMap<String, Vec<String>>,
    authorizer: Authorizer,
    types: Types,
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
        let types = Types::new().map_err(|e| PolicyError::invalid("writ.cedarschema", 0, &e))?;
        Ok(Compiled { schema, set, controls, authorizer: Authorizer::new(), types })
    }

    /// The entity builder of this policy (for the schema check in tests).
    #[cfg(test)]
    pub(crate) fn types(&self) -> &Types {
        &self.types
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
        let action = self.types.action(act);
        let principal_uid = self.types.identity(&principal.name);
        let change_uid = self.types.change.clone();
        let (entities, context) =
            self.types.decision(principal, facts, on_behalf_of, rules).map_err(internal)?;
        // Writ builds these entities itself, in the schema's shape (a unit test checks them
        // against the schema); checking every decision's entities again would double its cost.
        // The request itself is still checked against the schema below.
        let entities = Entities::from_entities(entities, None).map_err(|e| internal(e.to_string()))?;
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

#[cfg(test)]
pub(crate) fn schema() -> Schema {
    Schema::from_cedarschema_str(SCHEMA).map(|(s, _)| s).unwrap_or_else(|e| panic!("{e}"))
}

/// Entity type names, parsed once per compiled policy.
pub(crate) struct Types {
    identity: EntityTypeName,
    group: EntityTypeName,
    action: EntityTypeName,
    change: EntityUid,
}

impl Types {
    fn new() -> Result<Types, String> {
        let name = |text: &str| EntityTypeName::from_str(text).map_err(|e| e.to_string());
        Ok(Types {
            identity: name("Writ::Identity")?,
            group: name("Writ::Group")?,
            action: name("Writ::Action")?,
            change: EntityUid::from_type_name_and_id(name("Writ::Change")?, EntityId::new("change")),
        })
    }

    fn action(&self, act: Act) -> EntityUid {
        EntityUid::from_type_name_and_id(self.action.clone(), EntityId::new(act.as_str()))
    }

    fn identity(&self, name: &str) -> EntityUid {
        EntityUid::from_type_name_and_id(self.identity.clone(), EntityId::new(name))
    }

    fn reference(&self, name: &str) -> RestrictedExpression {
        RestrictedExpression::new_entity_uid(self.identity(name))
    }

    fn references<'a>(&self, names: impl Iterator<Item = &'a str>) -> RestrictedExpression {
        let mut names: Vec<&str> = names.collect();
        names.sort_unstable();
        names.dedup();
        RestrictedExpression::new_set(names.into_iter().map(|n| self.reference(n)))
    }

    /// One identity as Cedar sees it: kind, vendor, owner, and the groups `rules` put it in.
    fn identity_entity(&self, person: &Person, rules: &Rules) -> Result<Entity, String> {
        let mut attrs = HashMap::new();
        attrs.insert("kind".to_owned(), RestrictedExpression::new_string(person.kind.clone()));
        if let Some(vendor) = &person.vendor {
            attrs.insert("vendor".to_owned(), RestrictedExpression::new_string(vendor.clone()));
        }
        if let Some(owner) = &person.owner {
            attrs.insert("owner".to_owned(), self.reference(owner));
        }
        let parents: HashSet<EntityUid> = rules
            .groups_of(&person.name)
            .into_iter()
            .chain(person.groups.iter().map(String::as_str))
            .map(|g| EntityUid::from_type_name_and_id(self.group.clone(), EntityId::new(g)))
            .collect();
        Entity::new(self.identity(&person.name), attrs, parents).map_err(|e| e.to_string())
    }

    /// The change as Cedar sees it (the resource of every decision).
    fn change_entity(&self, facts: &ChangeFacts, rules: &Rules) -> Result<Entity, String> {
        let privileged = facts.ops.iter().any(|op| rules.classify(&op.entitlement).0);
        let text = |value: &str| RestrictedExpression::new_string(value.to_owned());
        let mut attrs = HashMap::new();
        attrs.insert("kind".to_owned(), text(&facts.kind));
        attrs.insert("event".to_owned(), text(&facts.event));
        attrs.insert("tier".to_owned(), text(&facts.tier));
        attrs.insert("emergency".to_owned(), RestrictedExpression::new_bool(facts.emergency));
        attrs.insert("privileged".to_owned(), RestrictedExpression::new_bool(privileged));
        attrs.insert("has_ticket".to_owned(), RestrictedExpression::new_bool(facts.has_ticket));
        attrs.insert("requester".to_owned(), self.reference(&facts.requester.name));
        attrs.insert(
            "on_behalf_of".to_owned(),
            self.references(facts.on_behalf_of.iter().map(|p| p.name.as_str())),
        );
        attrs.insert(
            "beneficiaries".to_owned(),
            self.references(facts.ops.iter().map(|op| op.identity.name.as_str())),
        );
        attrs.insert(
            "owners".to_owned(),
            self.references(facts.ops.iter().filter_map(|op| op.owner.as_deref())),
        );
        attrs.insert("approvers".to_owned(), self.references(facts.approvers.iter().map(String::as_str)));
        attrs.insert("executors".to_owned(), self.references(facts.executors.iter().map(String::as_str)));
        if let Some(vendor) = &facts.vendor {
            attrs.insert("vendor".to_owned(), text(vendor));
        }
        Entity::new(self.change.clone(), attrs, HashSet::new()).map_err(|e| e.to_string())
    }

    /// Every entity and the context of one decision.
    pub(crate) fn decision(
        &self,
        principal: &Person,
        facts: &ChangeFacts,
        on_behalf_of: Option<&Person>,
        rules: &Rules,
    ) -> Result<(Vec<Entity>, Context), String> {
        let mut people: BTreeMap<&str, &Person> = BTreeMap::new();
        for person in std::iter::once(principal)
            .chain(std::iter::once(&facts.requester))
            .chain(facts.on_behalf_of.iter())
            .chain(on_behalf_of)
            .chain(facts.ops.iter().map(|op| &op.identity))
        {
            people.entry(person.name.as_str()).or_insert(person);
        }
        let mut entities =
            people.values().map(|p| self.identity_entity(p, rules)).collect::<Result<Vec<_>, String>>()?;
        entities.push(self.change_entity(facts, rules)?);
        let context = Context::from_pairs([(
            "on_behalf_of".to_owned(),
            self.references(on_behalf_of.iter().map(|p| p.name.as_str())),
        )])
        .map_err(|e| e.to_string())?;
        Ok((entities, context))
    }
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
