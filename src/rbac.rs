//! Role-based permissions: the `resource:action` permissions each role holds. Tokens carry the
//! user's effective permissions in the `permissions` claim.

use crate::model::Role;

/// The permissions a role grants, as `resource:action` strings.
pub fn permissions(role: Role) -> &'static [&'static str] {
    match role {
        Role::SuperAdmin => &[
            "patient:read",
            "patient:write",
            "observation:read",
            "observation:write",
            "encounter:read",
            "encounter:write",
            "user:read",
            "user:write",
            "organization:read",
            "organization:write",
            "client:read",
            "client:write",
            "audit:read",
            "keys:rotate",
        ],
        Role::OrganizationAdmin => &[
            "patient:read",
            "observation:read",
            "encounter:read",
            "user:read",
            "user:write",
            "organization:read",
            "client:read",
            "audit:read",
        ],
        Role::HealthcareProvider => &[
            "patient:read",
            "patient:write",
            "observation:read",
            "observation:write",
            "encounter:read",
            "encounter:write",
        ],
        Role::DataAnalyst => &["patient:read", "observation:read", "encounter:read"],
        Role::ClinicalStaff => &[
            "patient:read",
            "observation:read",
            "observation:write",
            "encounter:read",
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_can_write_patients_analyst_cannot() {
        assert!(permissions(Role::HealthcareProvider).contains(&"patient:write"));
        assert!(!permissions(Role::DataAnalyst).contains(&"patient:write"));
    }
}
