//! Who may do what in one environment: the role each action needs there (GitHub's
//! repository permission decides a person's role; an environment may ask more or less of an
//! action than its default), and the people and teams who act as admins there whatever their
//! repository permission. The decision itself is `web::people::authorize`'s; this is the
//! rule it reads.

use std::collections::BTreeMap;

use crate::model::{Action, Role};

pub use crate::model::people::Grantee;

/// One environment's access rule.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Access {
    /// Actions whose role differs from [`Action::default_role`] here.
    pub roles: BTreeMap<Action, Role>,
    /// People and teams with the admin role here, whatever their repository permission.
    pub admins: Vec<Grantee>,
}

impl Access {
    /// The role `action` needs in this environment.
    pub fn needs(&self, action: Action) -> Role {
        self.roles
            .get(&action)
            .copied()
            .unwrap_or_else(|| action.default_role())
    }

    /// Builds the rule from the config file's `roles` table (action → role) and `admins`.
    pub fn parse(roles: &BTreeMap<String, String>, admins: &[String]) -> Result<Self, String> {
        let mut access = Self::default();
        for (action, role) in roles {
            let Some(action) = Action::parse(action) else {
                let known: Vec<&str> = Action::ALL.iter().map(|a| a.as_str()).collect();
                return Err(format!(
                    "roles: {action:?} is not an action (actions: {})",
                    known.join(", ")
                ));
            };
            let role = Role::parse(role).map_err(|e| format!("roles.{action}: {e}"))?;
            if action == Action::View && role > Role::Read {
                // Raising `view` would hide an environment from people who may act on it.
                return Err("roles.view: view needs read, no more".into());
            }
            access.roles.insert(action, role);
        }
        for admin in admins {
            access
                .admins
                .push(Grantee::parse(admin).map_err(|e| format!("admins: {e}"))?);
        }
        Ok(access)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_environment_may_change_what_an_action_needs() {
        let roles = BTreeMap::from([("rollback".to_owned(), "write".to_owned())]);
        let access = Access::parse(&roles, &["@acme/sre".to_owned()]).unwrap();
        assert_eq!(access.needs(Action::Rollback), Role::Write);
        assert_eq!(access.needs(Action::Force), Role::Admin);
        assert_eq!(access.needs(Action::Lock), Role::Write);
        assert_eq!(access.admins.len(), 1);
    }

    #[test]
    fn bad_rules_say_what_is_wrong() {
        let parse = |action: &str, role: &str| {
            Access::parse(&BTreeMap::from([(action.to_owned(), role.to_owned())]), &[]).unwrap_err()
        };
        assert!(parse("destroy", "admin").contains("not an action"));
        assert!(parse("rollback", "owner").contains("not a role"));
        assert!(parse("view", "admin").contains("view needs read"));
        assert!(
            Access::parse(&BTreeMap::new(), &["not a login".to_owned()])
                .unwrap_err()
                .contains("admins")
        );
    }
}
