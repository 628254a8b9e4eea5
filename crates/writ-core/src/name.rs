//! Validated names for identities, targets and entitlements: parse, don't validate.

use std::fmt;

use crate::error::Refusal;

/// Longest name Writ accepts.
pub const MAX_NAME_LEN: usize = 128;

macro_rules! validated_name {
    ($(#[$doc:meta])* $ty:ident, $what:literal, $extra:expr) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $ty(String);

        impl $ty {
            pub fn parse(input: &str) -> Result<$ty, Refusal> {
                check_name(input, $what, $extra).map(|()| $ty(input.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

validated_name!(
    /// The unique name of a human or non-human identity (`alice`, `svc-ci`).
    IdentityName,
    "identity name",
    ""
);
validated_name!(
    /// The unique name of a connected target system.
    TargetName,
    "target name",
    ""
);
validated_name!(
    /// Something grantable on a target: a group, a role, a secret path (may contain `/`).
    EntitlementName,
    "entitlement name",
    "/"
);
validated_name!(
    /// A vendor or client organisation that delegated actors belong to.
    OrgName,
    "organisation name",
    ""
);

validated_name!(
    /// A system that sends Writ deliveries (an IdP feed, an ITSM or SCM webhook): the name in its
    /// URL (`/hooks/github`) and on every delivery it sent.
    SourceName,
    "source name",
    ""
);

fn check_name(input: &str, what: &'static str, extra: &str) -> Result<(), Refusal> {
    let invalid =
        |reason: &'static str| Refusal::InvalidName { what, input: input.chars().take(40).collect(), reason };
    if input.is_empty() {
        return Err(invalid("must not be empty"));
    }
    if input.len() > MAX_NAME_LEN {
        return Err(invalid("is longer than 128 bytes"));
    }
    if !input.chars().next().is_some_and(|c| c.is_ascii_alphanumeric()) {
        return Err(invalid("must start with a letter or digit"));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || "._@+-".contains(c) || extra.contains(c);
    if !input.chars().all(allowed) {
        return Err(invalid("may only contain letters, digits and . _ @ + - (and / in entitlement names)"));
    }
    Ok(())
}

impl IdentityName {
    /// The form two names must not share: lower case, without the separators (`.`, `-`, `_`)
    /// at the ends that make look-alikes. `Bob`, `BOB` and `bob.` are all `bob`.
    pub fn canonical(&self) -> String {
        self.as_str().to_ascii_lowercase().trim_matches(['.', '-', '_']).to_owned()
    }
}

/// `TARGET:ENTITLEMENT`, the address of one entitlement.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntitlementRef {
    pub target: TargetName,
    pub entitlement: EntitlementName,
}

impl EntitlementRef {
    pub fn parse(input: &str) -> Result<EntitlementRef, Refusal> {
        let Some((target, entitlement)) = input.split_once(':') else {
            return Err(Refusal::InvalidName {
                what: "entitlement reference",
                input: input.chars().take(40).collect(),
                reason: "must be TARGET:ENTITLEMENT, for example access-repo:deploy-prod",
            });
        };
        Ok(EntitlementRef {
            target: TargetName::parse(target)?,
            entitlement: EntitlementName::parse(entitlement)?,
        })
    }
}

impl fmt::Display for EntitlementRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.target, self.entitlement)
    }
}
