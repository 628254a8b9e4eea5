//! The schemas Writ serves (RFC 7643 §4 and §8.7): one table of attributes per schema that
//! drives the `/Schemas` documents, the normalisation and validation of what clients send, and
//! the shape of what Writ returns.
//!
//! Parse leniently, emit strictly: attribute names match in any case and are stored in the
//! schema's case; a boolean sent as the string `"False"` (Entra) becomes `false`; a single value
//! where a list is expected becomes a list of one; unknown attributes are dropped; read-only
//! attributes (`id`, `meta`, `groups`) are ignored on input. Write-only attributes (`password`)
//! are accepted and never stored: Writ governs access, it does not authenticate people.

use serde_json::{Map, Value, json};

use crate::filter::AttrPath;
use crate::{ENTERPRISE, GROUP, Result, ScimError, ScimType, USER};

/// An attribute's data type (§2.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Type {
    String,
    Boolean,
    Decimal,
    Integer,
    DateTime,
    Reference,
    Binary,
    Complex,
}

impl Type {
    fn as_str(self) -> &'static str {
        match self {
            Type::String => "string",
            Type::Boolean => "boolean",
            Type::Decimal => "decimal",
            Type::Integer => "integer",
            Type::DateTime => "dateTime",
            Type::Reference => "reference",
            Type::Binary => "binary",
            Type::Complex => "complex",
        }
    }
}

/// Whether and when an attribute may be written (§7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mutability {
    ReadOnly,
    ReadWrite,
    Immutable,
    WriteOnly,
}

/// When an attribute is returned (§7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Returned {
    Always,
    Never,
    Default,
    Request,
}

/// One attribute of a schema.
#[derive(Clone, Copy, Debug)]
pub struct Attr {
    pub name: &'static str,
    pub ty: Type,
    pub multi: bool,
    pub required: bool,
    pub case_exact: bool,
    pub mutability: Mutability,
    pub returned: Returned,
    /// `uniqueness: server` (otherwise `none`).
    pub unique: bool,
    pub canonical: &'static [&'static str],
    pub refs: &'static [&'static str],
    pub subs: &'static [Attr],
    pub description: &'static str,
}

const fn attr(name: &'static str, ty: Type, description: &'static str) -> Attr {
    Attr {
        name,
        ty,
        multi: false,
        required: false,
        case_exact: false,
        mutability: Mutability::ReadWrite,
        returned: Returned::Default,
        unique: false,
        canonical: &[],
        refs: &[],
        subs: &[],
        description,
    }
}

const fn string(name: &'static str, description: &'static str) -> Attr {
    attr(name, Type::String, description)
}

impl Attr {
    const fn multi(self) -> Attr {
        Attr { multi: true, ..self }
    }
    const fn required(self) -> Attr {
        Attr { required: true, ..self }
    }
    const fn exact(self) -> Attr {
        Attr { case_exact: true, ..self }
    }
    const fn read_only(self) -> Attr {
        Attr { mutability: Mutability::ReadOnly, ..self }
    }
    const fn immutable(self) -> Attr {
        Attr { mutability: Mutability::Immutable, ..self }
    }
    const fn write_only(self) -> Attr {
        Attr { mutability: Mutability::WriteOnly, returned: Returned::Never, ..self }
    }
    const fn always(self) -> Attr {
        Attr { returned: Returned::Always, ..self }
    }
    const fn unique(self) -> Attr {
        Attr { unique: true, ..self }
    }
    const fn canonical(self, canonical: &'static [&'static str]) -> Attr {
        Attr { canonical, ..self }
    }
    const fn refs(self, refs: &'static [&'static str]) -> Attr {
        Attr { refs, ..self }
    }
    const fn subs(self, subs: &'static [Attr]) -> Attr {
        Attr { subs, ..self }
    }

    /// The sub-attribute named `name` (any case).
    pub fn sub(&self, name: &str) -> Option<&'static Attr> {
        self.subs.iter().find(|a| a.name.eq_ignore_ascii_case(name))
    }

    /// The schema document of this attribute (§7).
    fn document(&self) -> Value {
        let mut doc = json!({
            "name": self.name,
            "type": self.ty.as_str(),
            "multiValued": self.multi,
            "description": self.description,
            "required": self.required,
            "mutability": match self.mutability {
                Mutability::ReadOnly => "readOnly",
                Mutability::ReadWrite => "readWrite",
                Mutability::Immutable => "immutable",
                Mutability::WriteOnly => "writeOnly",
            },
            "returned": match self.returned {
                Returned::Always => "always",
                Returned::Never => "never",
                Returned::Default => "default",
                Returned::Request => "request",
            },
            "uniqueness": if self.unique { "server" } else { "none" },
        });
        if let Some(map) = doc.as_object_mut() {
            if self.ty != Type::Complex && self.ty != Type::Boolean {
                map.insert("caseExact".into(), Value::Bool(self.case_exact));
            }
            if !self.canonical.is_empty() {
                map.insert("canonicalValues".into(), json!(self.canonical));
            }
            if !self.refs.is_empty() {
                map.insert("referenceTypes".into(), json!(self.refs));
            }
            if !self.subs.is_empty() {
                map.insert("subAttributes".into(), self.subs.iter().map(Attr::document).collect());
            }
        }
        doc
    }
}

/// A schema: its URN and attributes.
#[derive(Debug)]
pub struct Schema {
    pub id: &'static str,
    pub name: &'static str,
    pub description: &'static str,
    pub attrs: &'static [Attr],
}

impl Schema {
    /// The attribute named `name` (any case).
    pub fn attr(&self, name: &str) -> Option<&'static Attr> {
        self.attrs.iter().find(|a| a.name.eq_ignore_ascii_case(name))
    }
}

const KINDS: &[&str] = &["work", "home", "other"];

const MULTI_SUBS: &[Attr] = &[
    string("value", "The value."),
    string("display", "A human-readable name, primarily used for display purposes."),
    string("type", "A label indicating the attribute's function."),
    attr("primary", Type::Boolean, "Whether this is the primary value."),
];

const EMAIL_SUBS: &[Attr] = &[
    string("value", "The email address."),
    string("display", "A human-readable name, primarily used for display purposes."),
    string("type", "A label indicating the attribute's function.").canonical(KINDS),
    attr("primary", Type::Boolean, "Whether this is the primary address."),
];

const NAME_SUBS: &[Attr] = &[
    string("formatted", "The full name, formatted for display."),
    string("familyName", "The family name."),
    string("givenName", "The given name."),
    string("middleName", "The middle name(s)."),
    string("honorificPrefix", "The honorific prefix(es), e.g. 'Ms.'."),
    string("honorificSuffix", "The honorific suffix(es), e.g. 'III'."),
];

const ADDRESS_SUBS: &[Attr] = &[
    string("formatted", "The full mailing address, formatted for display."),
    string("streetAddress", "The street address."),
    string("locality", "The city or locality."),
    string("region", "The state or region."),
    string("postalCode", "The zip code or postal code."),
    string("country", "The country name (ISO 3166-1 alpha-2)."),
    string("type", "A label indicating the attribute's function.").canonical(KINDS),
    attr("primary", Type::Boolean, "Whether this is the primary address."),
];

const GROUP_REF_SUBS: &[Attr] = &[
    string("value", "The identifier of the group.").read_only(),
    attr("$ref", Type::Reference, "The URI of the group.").read_only().refs(&["Group"]),
    string("display", "The group's display name.").read_only(),
    string("type", "How the membership was derived.").read_only().canonical(&["direct", "indirect"]),
];

/// The core User schema (RFC 7643 §4.1), as Writ serves it.
pub static USER_SCHEMA: Schema = Schema {
    id: USER,
    name: "User",
    description: "User Account",
    attrs: &[
        string("userName", "Unique identifier for the User, used to authenticate to the service provider.")
            .required()
            .unique(),
        attr("name", Type::Complex, "The components of the user's real name.").subs(NAME_SUBS),
        string("displayName", "The name of the User, suitable for display to end-users."),
        string("nickName", "The casual way to address the user."),
        attr("profileUrl", Type::Reference, "A URI that points to the User's online profile.")
            .refs(&["external"]),
        string("title", "The user's title, such as \"Vice President\"."),
        string("userType", "The relationship between the organization and the user."),
        string("preferredLanguage", "The User's preferred written or spoken language."),
        string("locale", "The User's default location for localizing."),
        string("timezone", "The User's time zone in the 'Olson' time zone database format."),
        attr("active", Type::Boolean, "The User's administrative status."),
        string("password", "The User's cleartext password (accepted, never stored or returned).")
            .write_only(),
        attr("emails", Type::Complex, "Email addresses for the user.").multi().subs(EMAIL_SUBS),
        attr("phoneNumbers", Type::Complex, "Phone numbers for the User.").multi().subs(MULTI_SUBS),
        attr("ims", Type::Complex, "Instant messaging addresses for the User.").multi().subs(MULTI_SUBS),
        attr("photos", Type::Complex, "URLs of photos of the User.").multi().subs(MULTI_SUBS),
        attr("addresses", Type::Complex, "A physical mailing address for this User.")
            .multi()
            .subs(ADDRESS_SUBS),
        attr("groups", Type::Complex, "The groups the user belongs to (read-only, from the Groups).")
            .multi()
            .read_only()
            .subs(GROUP_REF_SUBS),
        attr("entitlements", Type::Complex, "Entitlements the user has, as the client sees them.")
            .multi()
            .subs(MULTI_SUBS),
        attr("roles", Type::Complex, "Roles for the User.").multi().subs(MULTI_SUBS),
    ],
};

const MANAGER_SUBS: &[Attr] = &[
    string("value", "The id of the SCIM resource representing the User's manager."),
    attr("$ref", Type::Reference, "The URI of the manager's resource.").refs(&["User"]),
    string("displayName", "The displayName of the User's manager.").read_only(),
];

/// The enterprise User extension (RFC 7643 §4.3).
pub static ENTERPRISE_SCHEMA: Schema = Schema {
    id: ENTERPRISE,
    name: "EnterpriseUser",
    description: "Enterprise User",
    attrs: &[
        string("employeeNumber", "Numeric or alphanumeric identifier assigned to a person."),
        string("costCenter", "Identifies the name of a cost center."),
        string("organization", "Identifies the name of an organization."),
        string("division", "Identifies the name of a division."),
        string("department", "Identifies the name of a department."),
        attr("manager", Type::Complex, "The User's manager.").subs(MANAGER_SUBS),
    ],
};

const MEMBER_SUBS: &[Attr] = &[
    string("value", "The identifier of the member of this Group.").immutable(),
    attr("$ref", Type::Reference, "The URI of the member.").immutable().refs(&["User", "Group"]),
    string("display", "A human-readable name of the member.").read_only(),
    string("type", "The type of the member.").immutable().canonical(&["User", "Group"]),
];

/// The core Group schema (RFC 7643 §4.2).
pub static GROUP_SCHEMA: Schema = Schema {
    id: GROUP,
    name: "Group",
    description: "Group",
    attrs: &[
        string("displayName", "A human-readable name for the Group.").required().unique(),
        attr("members", Type::Complex, "A list of members of the Group.").multi().subs(MEMBER_SUBS),
    ],
};

const META_SUBS: &[Attr] = &[
    string("resourceType", "The name of the resource type of the resource.").read_only().exact(),
    attr("created", Type::DateTime, "The time the resource was added.").read_only(),
    attr("lastModified", Type::DateTime, "The most recent time the resource was modified.").read_only(),
    attr("location", Type::Reference, "The URI of the resource.").read_only().exact(),
    string("version", "The version (ETag) of the resource.").read_only().exact(),
];

/// The common attributes of every resource (§3.1).
static COMMON: &[Attr] = &[
    string("id", "The resource's identifier, assigned by the service provider.").read_only().always().exact(),
    string("externalId", "The resource's identifier in the provisioning client.").exact(),
    attr("meta", Type::Complex, "Resource metadata.").read_only().subs(META_SUBS),
];

static USER_EXTENSIONS: &[&Schema] = &[&ENTERPRISE_SCHEMA];

/// A resource type Writ serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    User,
    Group,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::User => "User",
            Kind::Group => "Group",
        }
    }

    /// The endpoint, without the leading slash: `Users`, `Groups`.
    pub fn endpoint(self) -> &'static str {
        match self {
            Kind::User => "Users",
            Kind::Group => "Groups",
        }
    }

    pub fn schema(self) -> &'static Schema {
        match self {
            Kind::User => &USER_SCHEMA,
            Kind::Group => &GROUP_SCHEMA,
        }
    }

    /// The extension schemas of the resource type.
    pub fn extensions(self) -> &'static [&'static Schema] {
        match self {
            Kind::User => USER_EXTENSIONS,
            Kind::Group => &[],
        }
    }

    /// The attribute that names a resource uniquely: `userName`, `displayName`.
    pub fn name_attr(self) -> &'static str {
        match self {
            Kind::User => "userName",
            Kind::Group => "displayName",
        }
    }
}

/// Where an attribute path lands in a resource: the extension (if any) whose object holds it,
/// the attribute, and the sub-attribute.
#[derive(Clone, Copy, Debug)]
pub struct Resolved {
    pub extension: Option<&'static Schema>,
    pub attr: &'static Attr,
    pub sub: Option<&'static Attr>,
}

/// Resolves `path` against `kind`'s schemas, or says why it cannot be.
pub fn resolve(kind: Kind, path: &AttrPath) -> Result<Resolved> {
    let unknown =
        || ScimError::bad(ScimType::InvalidPath, format!("{path} is not an attribute of a {}", kind.name()));
    let extension = match &path.uri {
        None => None,
        Some(uri) if uri.eq_ignore_ascii_case(kind.schema().id) => None,
        Some(uri) => {
            Some(*kind.extensions().iter().find(|s| s.id.eq_ignore_ascii_case(uri)).ok_or_else(unknown)?)
        }
    };
    let attr = match extension {
        Some(schema) => schema.attr(&path.name),
        None => kind
            .schema()
            .attr(&path.name)
            .or_else(|| COMMON.iter().find(|a| a.name.eq_ignore_ascii_case(&path.name))),
    }
    .ok_or_else(unknown)?;
    let sub = match &path.sub {
        None => None,
        Some(name) => Some(attr.sub(name).ok_or_else(unknown)?),
    };
    Ok(Resolved { extension, attr, sub })
}

/// The `/Schemas/{id}` document of `schema`; `base` is the SCIM base URL.
pub fn schema_document(schema: &Schema, base: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": schema.id,
        "name": schema.name,
        "description": schema.description,
        "attributes": schema.attrs.iter().map(Attr::document).collect::<Vec<_>>(),
        "meta": {"resourceType": "Schema", "location": format!("{base}/Schemas/{}", schema.id)},
    })
}

/// Every schema Writ serves.
pub fn schemas() -> [&'static Schema; 3] {
    [&USER_SCHEMA, &ENTERPRISE_SCHEMA, &GROUP_SCHEMA]
}

/// The `/ResourceTypes/{name}` document of `kind`.
pub fn resource_type_document(kind: Kind, base: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
        "id": kind.name(),
        "name": kind.name(),
        "endpoint": format!("/{}", kind.endpoint()),
        "description": match kind { Kind::User => "People; each is a Writ identity", Kind::Group => "Groups of people" },
        "schema": kind.schema().id,
        "schemaExtensions": kind.extensions().iter().map(|s| json!({"schema": s.id, "required": false})).collect::<Vec<_>>(),
        "meta": {"resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/{}", kind.name())},
    })
}

/// The `/ServiceProviderConfig` document: what Writ supports (§5).
pub fn service_provider_config(base: &str, max_results: usize) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "documentationUri": "https://datatracker.ietf.org/doc/html/rfc7644",
        "patch": {"supported": true},
        "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": true, "maxResults": max_results},
        "changePassword": {"supported": false},
        "sort": {"supported": true},
        "etag": {"supported": true},
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "Bearer token",
            "description": "A Writ API token (role scim) in the Authorization header",
            "primary": true,
        }],
        "meta": {"resourceType": "ServiceProviderConfig", "location": format!("{base}/ServiceProviderConfig")},
    })
}

/// Normalises what a client sent for a resource of `kind` into the stored shape: known,
/// writable attributes only, in the schema's case, with values of the declared types; the
/// extension's attributes nested under its URN. Checks required attributes.
pub fn normalize(kind: Kind, input: &Value) -> Result<Map<String, Value>> {
    let object = input.as_object().ok_or_else(|| {
        ScimError::bad(ScimType::InvalidSyntax, format!("a {} must be a JSON object", kind.name()))
    })?;
    let mut out = Map::new();
    for (key, value) in object {
        if let Some(extension) = kind.extensions().iter().find(|s| s.id.eq_ignore_ascii_case(key)) {
            let Some(fields) = value.as_object() else {
                if value.is_null() {
                    continue;
                }
                return Err(ScimError::bad(ScimType::InvalidValue, format!("{key} must be an object")));
            };
            let mut nested = Map::new();
            for (name, value) in fields {
                if let Some(attr) = extension.attr(name) {
                    put(&mut nested, attr, value, &format!("{}:{}", extension.id, attr.name))?;
                }
            }
            if !nested.is_empty() {
                out.insert(extension.id.to_owned(), Value::Object(nested));
            }
        } else if key.eq_ignore_ascii_case("externalId") {
            match value {
                Value::String(text) => {
                    out.insert("externalId".into(), Value::String(text.clone()));
                }
                Value::Null => {}
                _ => return Err(ScimError::bad(ScimType::InvalidValue, "externalId must be a string")),
            }
        } else if let Some(attr) = kind.schema().attr(key) {
            put(&mut out, attr, value, attr.name)?;
        }
    }
    check_required(kind, &out)?;
    Ok(out)
}

/// Checks that `doc` (already normalised) has every required attribute.
pub fn check_required(kind: Kind, doc: &Map<String, Value>) -> Result<()> {
    for attr in kind.schema().attrs.iter().filter(|a| a.required) {
        let present = match doc.get(attr.name) {
            Some(Value::String(text)) => !text.trim().is_empty(),
            Some(Value::Null) | None => false,
            Some(_) => true,
        };
        if !present {
            return Err(ScimError::bad(
                ScimType::InvalidValue,
                format!("{} is required for a {}", attr.name, kind.name()),
            ));
        }
    }
    Ok(())
}

/// Puts `value` for `attr` into `out` if the attribute is client-writable, coerced to its type.
fn put(out: &mut Map<String, Value>, attr: &Attr, value: &Value, label: &str) -> Result<()> {
    if matches!(attr.mutability, Mutability::ReadOnly | Mutability::WriteOnly) {
        return Ok(());
    }
    if let Some(value) = coerce(attr, value, label)? {
        out.insert(attr.name.to_owned(), value);
    }
    Ok(())
}

/// `value` as `attr` declares it (a list for a multi-valued attribute), `None` for null or an
/// empty list.
pub fn coerce(attr: &Attr, value: &Value, label: &str) -> Result<Option<Value>> {
    if value.is_null() {
        return Ok(None);
    }
    if attr.multi {
        let items: Vec<&Value> = match value {
            Value::Array(items) => items.iter().collect(),
            single => vec![single],
        };
        let mut out = Vec::new();
        for item in items {
            if let Some(item) = coerce_one(attr, item, label)?
                && !out.contains(&item)
            {
                out.push(item);
            }
        }
        return Ok((!out.is_empty()).then_some(Value::Array(out)));
    }
    coerce_one(attr, value, label)
}

fn coerce_one(attr: &Attr, value: &Value, label: &str) -> Result<Option<Value>> {
    let wrong = || {
        ScimError::bad(
            ScimType::InvalidValue,
            format!(
                "{label} must be a {}{}",
                attr.ty.as_str(),
                if attr.multi { " (or a list of them)" } else { "" }
            ),
        )
    };
    Ok(Some(match (attr.ty, value) {
        (_, Value::Null) => return Ok(None),
        (Type::Complex, Value::Object(fields)) => {
            let mut nested = Map::new();
            for (name, value) in fields {
                if let Some(sub) = attr.sub(name) {
                    // Read-only sub-attributes (a member's display) are the server's to fill.
                    if sub.mutability != Mutability::ReadOnly
                        && let Some(value) = coerce_one(sub, value, &format!("{label}.{}", sub.name))?
                    {
                        nested.insert(sub.name.to_owned(), value);
                    }
                }
            }
            if nested.is_empty() {
                return Ok(None);
            }
            Value::Object(nested)
        }
        (Type::Boolean, Value::Bool(flag)) => Value::Bool(*flag),
        (Type::Boolean, Value::String(text)) if text.eq_ignore_ascii_case("true") => Value::Bool(true),
        (Type::Boolean, Value::String(text)) if text.eq_ignore_ascii_case("false") => Value::Bool(false),
        (Type::Integer, Value::Number(n)) if n.is_i64() => value.clone(),
        (Type::Decimal, Value::Number(_)) => value.clone(),
        (Type::String | Type::Reference | Type::Binary | Type::DateTime, Value::String(_)) => value.clone(),
        _ => return Err(wrong()),
    }))
}

/// The `schemas` list of a stored resource: the core URN and each extension it uses.
pub fn schemas_of(kind: Kind, doc: &Map<String, Value>) -> Vec<Value> {
    let mut schemas = vec![Value::String(kind.schema().id.to_owned())];
    schemas.extend(
        kind.extensions().iter().filter(|s| doc.contains_key(s.id)).map(|s| Value::String(s.id.to_owned())),
    );
    schemas
}

/// The value of a string attribute of the core schema, if set.
pub fn text<'a>(doc: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    doc.get(name).and_then(Value::as_str)
}

/// The value of a string attribute of the enterprise extension, if set.
pub fn enterprise<'a>(doc: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    doc.get(ENTERPRISE).and_then(|e| e.get(name)).and_then(Value::as_str)
}
