//! Mesos' access control lists (`--acls`): which principal may do what to
//! which object, in Mesos' JSON format and with Mesos' local authorizer's
//! semantics.
//!
//! ```json
//! {
//!   "permissive": false,
//!   "register_frameworks": [
//!     {"principals": {"values": ["analytics"]}, "roles": {"values": ["analytics"]}},
//!     {"principals": {"type": "ANY"}, "roles": {"type": "NONE"}}
//!   ]
//! }
//! ```
//!
//! Each action holds a list of rules, each a subject entity (`principals`)
//! and an object entity (named per action, as in Mesos' `acls.proto`). An
//! entity is `{"values": [...]}` (SOME), `{"type": "ANY"}` or
//! `{"type": "NONE"}`. A request is checked against the action's rules in
//! order and the **first rule that matches decides**; when none matches,
//! `permissive` (default `true`) decides.
//!
//! Matching, as Mesos' local authorizer does it: the request's subject is
//! SOME(principal), or ANY for an anonymous caller; its object is
//! SOME(object), or ANY when the action has no object.
//! - a rule entity ANY or NONE *matches* any request entity; a rule entity
//!   with values matches a SOME request whose value is among them (never an
//!   anonymous subject);
//! - a matched rule *allows* only if neither of its entities is NONE (and an
//!   anonymous subject is allowed only by `principals: ANY`).
//!
//! So `{"principals": {"type": "ANY"}, "roles": {"type": "NONE"}}` is "nobody
//! else", and `{"principals": {"values": ["ops"]}, ...}` never applies to an
//! anonymous caller.
//!
//! Roles (in `register_frameworks`, `reserve_resources`, `update_weights`,
//! `get_quotas`, `update_quotas`, `view_roles`) are hierarchical as in Mesos:
//! the value `eng` is the role `eng` only, and `eng/%` stands for every role
//! nested below `eng` (`eng/a`, `eng/a/b`; not `eng` itself).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde_json::Value;

use crate::Principal;

/// An action the ACLs govern: Mesos' names (and object fields), plus
/// Agora's own `kill_tasks`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    /// Subscribe a framework in a role (object: the role).
    RegisterFrameworks,
    /// Launch a task as an OS user (object: the user).
    RunTasks,
    /// Tear down a framework (object: the framework's principal).
    TeardownFrameworks,
    /// Reserve resources for a role (object: the role).
    ReserveResources,
    /// Unreserve resources (object: the principal that reserved them).
    UnreserveResources,
    /// Set a role's weight (object: the role).
    UpdateWeights,
    /// See a role's quota (object: the role).
    GetQuotas,
    /// Set or remove a role's quota (object: the role).
    UpdateQuotas,
    /// See a framework (object: the framework's user).
    ViewFrameworks,
    /// See a task (object: the user it runs as).
    ViewTasks,
    /// See an executor (object: the user it runs as).
    ViewExecutors,
    /// See a role (object: the role).
    ViewRoles,
    /// Read a sandbox (object: the user its executor runs as).
    AccessSandboxes,
    /// GET an endpoint (object: the path).
    GetEndpoints,
    /// Register an agent (no object: use ANY or NONE).
    RegisterAgents,
    /// Mark an agent gone (no object: use ANY or NONE).
    MarkAgentsGone,
    /// Agora's own: kill a task as an operator (object: the principal of
    /// the task's framework).
    KillTasks,
}

impl Action {
    pub const ALL: [Action; 17] = [
        Action::RegisterFrameworks,
        Action::RunTasks,
        Action::TeardownFrameworks,
        Action::ReserveResources,
        Action::UnreserveResources,
        Action::UpdateWeights,
        Action::GetQuotas,
        Action::UpdateQuotas,
        Action::ViewFrameworks,
        Action::ViewTasks,
        Action::ViewExecutors,
        Action::ViewRoles,
        Action::AccessSandboxes,
        Action::GetEndpoints,
        Action::RegisterAgents,
        Action::MarkAgentsGone,
        Action::KillTasks,
    ];

    /// The action's key in the ACL JSON.
    pub fn key(self) -> &'static str {
        match self {
            Action::RegisterFrameworks => "register_frameworks",
            Action::RunTasks => "run_tasks",
            Action::TeardownFrameworks => "teardown_frameworks",
            Action::ReserveResources => "reserve_resources",
            Action::UnreserveResources => "unreserve_resources",
            Action::UpdateWeights => "update_weights",
            Action::GetQuotas => "get_quotas",
            Action::UpdateQuotas => "update_quotas",
            Action::ViewFrameworks => "view_frameworks",
            Action::ViewTasks => "view_tasks",
            Action::ViewExecutors => "view_executors",
            Action::ViewRoles => "view_roles",
            Action::AccessSandboxes => "access_sandboxes",
            Action::GetEndpoints => "get_endpoints",
            Action::RegisterAgents => "register_agents",
            Action::MarkAgentsGone => "mark_agents_gone",
            Action::KillTasks => "kill_tasks",
        }
    }

    /// The name of the rule's object entity.
    pub fn object_field(self) -> &'static str {
        match self {
            Action::RegisterFrameworks
            | Action::ReserveResources
            | Action::UpdateWeights
            | Action::GetQuotas
            | Action::UpdateQuotas
            | Action::ViewRoles => "roles",
            Action::RunTasks
            | Action::ViewFrameworks
            | Action::ViewTasks
            | Action::ViewExecutors
            | Action::AccessSandboxes => "users",
            Action::TeardownFrameworks | Action::KillTasks => "framework_principals",
            Action::UnreserveResources => "reserver_principals",
            Action::GetEndpoints => "paths",
            Action::RegisterAgents | Action::MarkAgentsGone => "agents",
        }
    }

    /// Whether the object is a role, with Mesos' `parent/%` wildcards.
    fn hierarchical(self) -> bool {
        self.object_field() == "roles"
    }

    pub fn from_key(key: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.key() == key)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// Mesos' ACL actions that Agora does not enforce: named in the error, so
/// that an operator bringing a Mesos file knows why it is refused.
const MESOS_ONLY: &[&str] = &[
    "create_volumes",
    "destroy_volumes",
    "resize_volumes",
    "access_mesos_logs",
    "view_flags",
    "set_log_level",
    "launch_nested_containers_as_user",
    "launch_nested_containers_under_parent_with_user",
    "kill_nested_containers",
    "wait_nested_containers",
    "launch_nested_container_sessions_as_user",
    "launch_nested_container_sessions_under_parent_with_user",
    "attach_containers_input",
    "attach_containers_output",
    "view_containers",
    "remove_nested_containers",
    "launch_standalone_containers",
    "kill_standalone_containers",
    "wait_standalone_containers",
    "remove_standalone_containers",
    "view_standalone_containers",
    "update_maintenance_schedules",
    "get_maintenance_schedules",
    "start_maintenances",
    "stop_maintenances",
    "get_maintenance_statuses",
    "drain_agents",
    "deactivate_agents",
    "reactivate_agents",
    "view_resource_providers",
    "modify_resource_provider_configs",
    "mark_resource_providers_gone",
    "prune_images",
];

/// A subject or object of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entity {
    /// These values (Mesos' SOME).
    Values(Vec<String>),
    Any,
    None,
}

impl Entity {
    fn parse(value: &Value, at: &str) -> Result<Entity, AclError> {
        let bad = |why: String| AclError::Invalid(format!("{at}: {why}"));
        let Value::Object(map) = value else {
            return Err(bad(
                "an entity is an object: {\"values\": [...]} or {\"type\": \"ANY\"|\"NONE\"}"
                    .into(),
            ));
        };
        for key in map.keys() {
            if key != "type" && key != "values" {
                return Err(bad(format!(
                    "unknown field '{key}' (an entity has 'type' and 'values')"
                )));
            }
        }
        let values = match map.get("values") {
            None => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| match item {
                    Value::String(s) => Ok(s.clone()),
                    _ => Err(bad("'values' must be a list of strings".into())),
                })
                .collect::<Result<Vec<_>, _>>()?,
            Some(_) => return Err(bad("'values' must be a list of strings".into())),
        };
        match map.get("type") {
            // As in Mesos, values are ignored for ANY and NONE.
            Some(Value::String(t)) if t == "ANY" => Ok(Entity::Any),
            Some(Value::String(t)) if t == "NONE" => Ok(Entity::None),
            Some(Value::String(t)) if t == "SOME" => Ok(Entity::Values(values)),
            None => Ok(Entity::Values(values)),
            Some(other) => Err(bad(format!(
                "'type' must be \"ANY\", \"NONE\" or \"SOME\", not {other}"
            ))),
        }
    }
}

/// The entity a request presents: one value, or ANY (an anonymous subject,
/// an action without an object).
#[derive(Debug, Clone, Copy)]
enum Request<'a> {
    One(&'a str),
    Any,
}

/// Mesos' match matrix: ANY and NONE rules match every request; a rule
/// with values matches a single value among them.
fn matches(request: Request<'_>, rule: &Entity) -> bool {
    match (request, rule) {
        (_, Entity::Any | Entity::None) => true,
        (Request::One(value), Entity::Values(values)) => values.iter().any(|v| v == value),
        (Request::Any, Entity::Values(_)) => false,
    }
}

/// Mesos' allow matrix, for a rule that matched: NONE allows nothing, ANY
/// allows everything, values allow what they matched.
fn allows(request: Request<'_>, rule: &Entity) -> bool {
    match (request, rule) {
        (_, Entity::None) => false,
        (_, Entity::Any) => true,
        (Request::One(value), Entity::Values(values)) => values.iter().any(|v| v == value),
        (Request::Any, Entity::Values(_)) => false,
    }
}

/// One rule of an action. `below` is set for a role rule `parent/%`: its
/// object is every role strictly below `parent` (the value kept is
/// `parent/`, the prefix such roles start with).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    principals: Entity,
    objects: Entity,
    below: Option<String>,
}

impl Rule {
    /// `Some(allowed)` when the rule decides this request.
    fn decide(&self, subject: Request<'_>, object: Request<'_>) -> Option<bool> {
        if let Some(prefix) = &self.below {
            // A recursive rule: its object matches (and allows) any role
            // nested below the parent; its subject is checked as usual.
            let Request::One(role) = object else {
                return None;
            };
            if !role.starts_with(prefix.as_str()) || role.len() == prefix.len() {
                return None;
            }
            return matches(subject, &self.principals).then(|| allows(subject, &self.principals));
        }
        (matches(subject, &self.principals) && matches(object, &self.objects))
            .then(|| allows(subject, &self.principals) && allows(object, &self.objects))
    }

    /// Whether the rule refuses every request it matches.
    fn denies(&self) -> bool {
        self.principals == Entity::None || (self.below.is_none() && self.objects == Entity::None)
    }
}

/// Why an ACL document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AclError {
    #[error("the ACLs are not valid JSON: {0}")]
    Json(String),
    #[error("invalid ACLs: {0}")]
    Invalid(String),
}

/// Where `--acls` says the ACLs are: Mesos' rule, a value that starts with
/// `{` is the JSON itself, anything else a path (`file://` allowed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AclSource {
    Json(String),
    File(PathBuf),
}

impl AclSource {
    pub fn from_flag(value: &str) -> AclSource {
        let trimmed = value.trim_start();
        if trimmed.starts_with('{') {
            AclSource::Json(value.to_string())
        } else {
            AclSource::File(PathBuf::from(
                value.strip_prefix("file://").unwrap_or(value),
            ))
        }
    }
}

/// A parsed ACL document. The default allows everything (no rules,
/// permissive), which is a master or agent without `--acls`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acls {
    permissive: bool,
    rules: BTreeMap<Action, Vec<Rule>>,
}

impl Default for Acls {
    fn default() -> Self {
        Acls {
            permissive: true,
            rules: BTreeMap::new(),
        }
    }
}

/// The endpoints `get_endpoints` guards (Mesos' list, where Agora serves
/// them, and Agora's Prometheus `/metrics`, which shows the same figures).
pub const GUARDED_ENDPOINTS: [&str; 4] = [
    "/metrics",
    "/metrics/snapshot",
    "/monitor/statistics",
    "/monitor/statistics.json",
];

/// The actions that decide which frameworks, tasks and executors a viewer
/// sees (objects: the OS user each runs as).
pub const VIEW_ACTIONS: [Action; 3] = [
    Action::ViewFrameworks,
    Action::ViewTasks,
    Action::ViewExecutors,
];

impl Acls {
    /// Parses Mesos' ACL JSON. Unknown keys (and Mesos actions Agora does
    /// not enforce) are refused, so that a rule is never silently ignored.
    pub fn parse(text: &str) -> Result<Acls, AclError> {
        let value: Value = serde_json::from_str(text).map_err(|e| AclError::Json(e.to_string()))?;
        let Value::Object(document) = value else {
            return Err(AclError::Invalid(
                "the ACLs are a JSON object of actions".into(),
            ));
        };
        let mut acls = Acls::default();
        for (key, value) in &document {
            if key == "permissive" {
                acls.permissive = value.as_bool().ok_or_else(|| {
                    AclError::Invalid("'permissive' must be true or false".into())
                })?;
                continue;
            }
            let Some(action) = Action::from_key(key) else {
                let why = if MESOS_ONLY.contains(&key.as_str()) {
                    format!("'{key}' is a Mesos ACL that Agora does not enforce; remove it")
                } else {
                    let known: Vec<&str> = Action::ALL.iter().map(|a| a.key()).collect();
                    format!(
                        "unknown key '{key}' (known: permissive, {})",
                        known.join(", ")
                    )
                };
                return Err(AclError::Invalid(why));
            };
            let Value::Array(items) = value else {
                return Err(AclError::Invalid(format!(
                    "'{key}' must be a list of rules"
                )));
            };
            let mut rules = Vec::new();
            for (i, item) in items.iter().enumerate() {
                rules.extend(parse_rule(action, item, &format!("{key}[{i}]"))?);
            }
            acls.rules.insert(action, rules);
        }
        Ok(acls)
    }

    /// Whether requests no rule matches are allowed.
    pub fn permissive(&self) -> bool {
        self.permissive
    }

    /// Whether `subject` (None: anonymous) may do `action` to `object`.
    pub fn authorized(&self, action: Action, subject: Option<&Principal>, object: &str) -> bool {
        self.decide(action, subject, Request::One(object))
    }

    /// For an action without an object (`register_agents`,
    /// `mark_agents_gone`), or a check of "any object": the object is ANY,
    /// which only rules whose object is ANY or NONE match.
    pub fn authorized_any(&self, action: Action, subject: Option<&Principal>) -> bool {
        self.decide(action, subject, Request::Any)
    }

    /// Whether `view_frameworks`, `view_tasks` or `view_executors` could
    /// hide anything: when false every framework, task and executor is
    /// shown to everyone, and a reader may hand out its shared body.
    pub fn restricts_views(&self) -> bool {
        VIEW_ACTIONS.iter().any(|action| self.restricts(*action))
    }

    /// Whether `viewer` (None: anonymous) may see a framework, task or
    /// executor (`action`: one of [`VIEW_ACTIONS`]) by Mesos' rule for
    /// their object: the OS user it runs as (`runs_as`, what its command
    /// names), else its framework's user. A framework is asked with
    /// `runs_as` None. The master and the agent both filter their views
    /// through this.
    pub fn may_view(
        &self,
        action: Action,
        viewer: Option<&Principal>,
        runs_as: Option<&str>,
        framework_user: &str,
    ) -> bool {
        self.authorized(action, viewer, runs_as.unwrap_or(framework_user))
    }

    /// `get_endpoints` for a request to `path`: `None` when it may go on,
    /// else why not. Only [`GUARDED_ENDPOINTS`] are subject to it (as in
    /// Mesos, which guards a fixed list); every other path is `None`.
    pub fn endpoint_refusal(&self, subject: Option<&Principal>, path: &str) -> Option<String> {
        if !GUARDED_ENDPOINTS.contains(&path)
            || self.authorized(Action::GetEndpoints, subject, path)
        {
            return None;
        }
        Some(match subject {
            Some(principal) => {
                format!("principal '{principal}' may not GET {path} (get_endpoints)")
            }
            None => format!("an anonymous caller may not GET {path} (get_endpoints)"),
        })
    }

    fn decide(&self, action: Action, subject: Option<&Principal>, object: Request<'_>) -> bool {
        let subject = subject.map_or(Request::Any, |p| Request::One(p.as_str()));
        self.rules
            .get(&action)
            .into_iter()
            .flatten()
            .find_map(|rule| rule.decide(subject, object))
            .unwrap_or(self.permissive)
    }

    /// Whether any request for `action` could be refused. When it is false
    /// every check of the action answers yes, and views may skip filtering.
    pub fn restricts(&self, action: Action) -> bool {
        for rule in self.rules.get(&action).into_iter().flatten() {
            if rule.denies() {
                return true;
            }
            // ANY/ANY matches and allows every request: nothing after it counts.
            if rule.principals == Entity::Any && rule.below.is_none() && rule.objects == Entity::Any
            {
                return false;
            }
        }
        !self.permissive
    }
}

/// One rule as written; a roles rule naming `parent/%` values becomes one
/// recursive rule per such value followed by a rule for the plain values
/// (Mesos splits them the same way; they stay in order, so the first
/// match is unchanged).
fn parse_rule(action: Action, value: &Value, at: &str) -> Result<Vec<Rule>, AclError> {
    let Value::Object(map) = value else {
        return Err(AclError::Invalid(format!(
            "{at}: a rule is an object with 'principals' and '{}'",
            action.object_field()
        )));
    };
    let object_field = action.object_field();
    for key in map.keys() {
        if key != "principals" && key != object_field {
            return Err(AclError::Invalid(format!(
                "{at}: unknown field '{key}' (a {} rule has 'principals' and '{object_field}')",
                action.key()
            )));
        }
    }
    let principals = Entity::parse(
        map.get("principals")
            .ok_or_else(|| AclError::Invalid(format!("{at}: 'principals' is required")))?,
        &format!("{at}.principals"),
    )?;
    let objects = Entity::parse(
        map.get(object_field)
            .ok_or_else(|| AclError::Invalid(format!("{at}: '{object_field}' is required")))?,
        &format!("{at}.{object_field}"),
    )?;
    let Entity::Values(values) = &objects else {
        return Ok(vec![Rule {
            principals,
            objects,
            below: None,
        }]);
    };
    if !action.hierarchical() {
        return Ok(vec![Rule {
            principals,
            objects,
            below: None,
        }]);
    }
    let mut rules = Vec::new();
    let mut plain = Vec::new();
    for value in values {
        match value.strip_suffix('%') {
            Some(prefix) if prefix.ends_with('/') => rules.push(Rule {
                principals: principals.clone(),
                objects: Entity::Values(vec![value.clone()]),
                below: Some(prefix.to_string()),
            }),
            _ => plain.push(value.clone()),
        }
    }
    if !plain.is_empty() || rules.is_empty() {
        rules.push(Rule {
            principals,
            objects: Entity::Values(plain),
            below: None,
        });
    }
    Ok(rules)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(name: &str) -> Principal {
        Principal::new(name)
    }

    fn acls(text: &str) -> Acls {
        Acls::parse(text).expect("valid ACLs")
    }

    #[test]
    fn no_acls_allow_everything() {
        let acls = Acls::default();
        for action in Action::ALL {
            assert!(acls.authorized(action, None, "x"));
            assert!(acls.authorized(action, Some(&p("a")), "x"));
            assert!(!acls.restricts(action));
        }
        assert_eq!(acls, Acls::parse("{}").expect("empty"));
    }

    #[test]
    fn get_endpoints_guards_only_its_endpoints() {
        let acls = acls(
            r#"{"get_endpoints": [
                {"principals": {"values": ["ops"]}, "paths": {"values": ["/metrics", "/metrics/snapshot"]}},
                {"principals": {"type": "ANY"}, "paths": {"type": "NONE"}}]}"#,
        );
        assert_eq!(acls.endpoint_refusal(Some(&p("ops")), "/metrics"), None);
        assert_eq!(
            acls.endpoint_refusal(Some(&p("ops")), "/metrics/snapshot"),
            None
        );
        let refused = acls
            .endpoint_refusal(Some(&p("dev")), "/metrics")
            .expect("refused");
        assert!(
            refused.contains("'dev'") && refused.contains("/metrics"),
            "{refused}"
        );
        assert!(acls.endpoint_refusal(None, "/monitor/statistics").is_some());
        // Paths outside Mesos' list are not get_endpoints' business.
        assert_eq!(acls.endpoint_refusal(Some(&p("dev")), "/state"), None);
        assert_eq!(Acls::default().endpoint_refusal(None, "/metrics"), None);
    }

    #[test]
    fn may_view_judges_the_user_it_runs_as_else_the_frameworks() {
        let acls = acls(
            r#"{"view_tasks": [
                {"principals": {"values": ["a"]}, "users": {"values": ["alice"]}},
                {"principals": {"type": "ANY"}, "users": {"type": "NONE"}}]}"#,
        );
        assert!(acls.restricts_views());
        // The task's own user decides; the framework's only when it has none.
        assert!(acls.may_view(Action::ViewTasks, Some(&p("a")), Some("alice"), "bob"));
        assert!(!acls.may_view(Action::ViewTasks, Some(&p("a")), Some("bob"), "alice"));
        assert!(acls.may_view(Action::ViewTasks, Some(&p("a")), None, "alice"));
        assert!(!acls.may_view(Action::ViewTasks, Some(&p("b")), None, "alice"));
        assert!(!acls.may_view(Action::ViewTasks, None, Some("alice"), "alice"));
        // Other view actions have no rule: permissive.
        assert!(acls.may_view(Action::ViewFrameworks, None, None, "bob"));
        assert!(!Acls::default().restricts_views());
        let unrelated = Acls::parse(
            r#"{"permissive": true, "run_tasks": [
                {"principals": {"type": "ANY"}, "users": {"type": "NONE"}}]}"#,
        )
        .expect("valid");
        assert!(!unrelated.restricts_views());
        let closed = Acls::parse(r#"{"permissive": false}"#).expect("valid");
        assert!(closed.restricts_views());
        assert!(!closed.may_view(Action::ViewExecutors, Some(&p("a")), None, "alice"));
    }

    #[test]
    fn permissive_false_refuses_what_no_rule_matches() {
        let acls = acls(
            r#"{"permissive": false,
                "run_tasks": [{"principals": {"values": ["a"]}, "users": {"values": ["alice"]}}]}"#,
        );
        assert!(acls.authorized(Action::RunTasks, Some(&p("a")), "alice"));
        assert!(!acls.authorized(Action::RunTasks, Some(&p("a")), "root"));
        assert!(!acls.authorized(Action::RunTasks, Some(&p("b")), "alice"));
        assert!(!acls.authorized(Action::RunTasks, None, "alice"));
        // Other actions have no rules: refused too.
        assert!(!acls.authorized(Action::ViewTasks, Some(&p("a")), "alice"));
        assert!(acls.restricts(Action::ViewTasks));
    }

    #[test]
    fn first_match_wins() {
        let acls = acls(
            r#"{"run_tasks": [
                {"principals": {"values": ["a"]}, "users": {"values": ["root"]}},
                {"principals": {"type": "ANY"}, "users": {"type": "NONE"}}
            ]}"#,
        );
        assert!(acls.authorized(Action::RunTasks, Some(&p("a")), "root"));
        assert!(!acls.authorized(Action::RunTasks, Some(&p("a")), "nobody"));
        assert!(!acls.authorized(Action::RunTasks, Some(&p("b")), "root"));
        assert!(!acls.authorized(Action::RunTasks, None, "root"));

        // The same rules the other way round: the NONE rule decides first.
        let reversed = Acls::parse(
            r#"{"run_tasks": [
                {"principals": {"type": "ANY"}, "users": {"type": "NONE"}},
                {"principals": {"values": ["a"]}, "users": {"values": ["root"]}}
            ]}"#,
        )
        .expect("valid");
        assert!(!reversed.authorized(Action::RunTasks, Some(&p("a")), "root"));
    }

    #[test]
    fn anonymous_subjects_match_only_any_and_none() {
        let acls = acls(
            r#"{"teardown_frameworks": [
                {"principals": {"values": ["ops"]}, "framework_principals": {"type": "ANY"}},
                {"principals": {"type": "NONE"}, "framework_principals": {"type": "ANY"}}
            ]}"#,
        );
        assert!(acls.authorized(Action::TeardownFrameworks, Some(&p("ops")), "f"));
        // Principals NONE matches every subject, anonymous included, and refuses.
        assert!(!acls.authorized(Action::TeardownFrameworks, None, "f"));
        assert!(!acls.authorized(Action::TeardownFrameworks, Some(&p("dev")), "f"));

        let any = Acls::parse(
            r#"{"permissive": false, "view_frameworks": [
                {"principals": {"type": "ANY"}, "users": {"type": "ANY"}}]}"#,
        )
        .expect("valid");
        assert!(any.authorized(Action::ViewFrameworks, None, "alice"));
        assert!(!any.restricts(Action::ViewFrameworks));
    }

    #[test]
    fn objectless_actions_match_any_and_none_rules_only() {
        let acls = acls(
            r#"{"register_agents": [
                {"principals": {"values": ["agent"]}, "agents": {"type": "ANY"}},
                {"principals": {"type": "ANY"}, "agents": {"type": "NONE"}}
            ],
            "mark_agents_gone": [
                {"principals": {"values": ["ops"]}, "agents": {"values": ["x"]}}
            ]}"#,
        );
        assert!(acls.authorized_any(Action::RegisterAgents, Some(&p("agent"))));
        assert!(!acls.authorized_any(Action::RegisterAgents, Some(&p("intruder"))));
        assert!(!acls.authorized_any(Action::RegisterAgents, None));
        // A values rule never matches an ANY object: permissive decides.
        assert!(acls.authorized_any(Action::MarkAgentsGone, Some(&p("dev"))));
    }

    #[test]
    fn each_action_allows_and_denies_by_its_object_field() {
        for action in Action::ALL {
            let field = action.object_field();
            let text = format!(
                r#"{{"{key}": [
                    {{"principals": {{"values": ["good"]}}, "{field}": {{"values": ["obj"]}}}},
                    {{"principals": {{"type": "ANY"}}, "{field}": {{"type": "NONE"}}}}
                ]}}"#,
                key = action.key()
            );
            let acls = Acls::parse(&text).unwrap_or_else(|e| panic!("{action}: {e}"));
            assert!(acls.authorized(action, Some(&p("good")), "obj"), "{action}");
            assert!(!acls.authorized(action, Some(&p("bad")), "obj"), "{action}");
            assert!(
                !acls.authorized(action, Some(&p("good")), "other"),
                "{action}"
            );
            assert!(!acls.authorized(action, None, "obj"), "{action}");
            assert!(acls.restricts(action), "{action}");
            for other in Action::ALL.into_iter().filter(|a| *a != action) {
                assert!(
                    acls.authorized(other, None, "obj"),
                    "{other} after {action}"
                );
                assert!(!acls.restricts(other));
            }
        }
    }

    #[test]
    fn roles_are_hierarchical_only_through_percent() {
        let acls = acls(
            r#"{"permissive": false, "register_frameworks": [
                {"principals": {"values": ["eng"]}, "roles": {"values": ["eng", "dev/%"]}}
            ]}"#,
        );
        let eng = Some(p("eng"));
        assert!(acls.authorized(Action::RegisterFrameworks, eng.as_ref(), "eng"));
        // `eng` is not `eng/a`.
        assert!(!acls.authorized(Action::RegisterFrameworks, eng.as_ref(), "eng/a"));
        // `dev/%` is every role below dev, not dev itself.
        assert!(acls.authorized(Action::RegisterFrameworks, eng.as_ref(), "dev/a"));
        assert!(acls.authorized(Action::RegisterFrameworks, eng.as_ref(), "dev/a/b"));
        assert!(!acls.authorized(Action::RegisterFrameworks, eng.as_ref(), "dev"));
        assert!(!acls.authorized(Action::RegisterFrameworks, eng.as_ref(), "devx/a"));
        assert!(!acls.authorized(Action::RegisterFrameworks, Some(&p("x")), "dev/a"));

        // `%` is literal where objects are not roles.
        let users = Acls::parse(
            r#"{"permissive": false, "run_tasks": [
                {"principals": {"type": "ANY"}, "users": {"values": ["a/%"]}}]}"#,
        )
        .expect("valid");
        assert!(!users.authorized(Action::RunTasks, None, "a/b"));
        assert!(users.authorized(Action::RunTasks, None, "a/%"));
    }

    #[test]
    fn a_recursive_rule_with_principals_none_denies() {
        let acls = acls(
            r#"{"update_quotas": [
                {"principals": {"type": "NONE"}, "roles": {"values": ["eng/%"]}}
            ]}"#,
        );
        assert!(!acls.authorized(Action::UpdateQuotas, Some(&p("a")), "eng/x"));
        assert!(acls.authorized(Action::UpdateQuotas, Some(&p("a")), "eng"));
        assert!(acls.restricts(Action::UpdateQuotas));
    }

    #[test]
    fn restricts_is_false_only_when_nothing_can_be_refused() {
        let allow_some = acls(
            r#"{"view_tasks": [{"principals": {"values": ["a"]}, "users": {"values": ["u"]}}]}"#,
        );
        assert!(!allow_some.restricts(Action::ViewTasks));
        let deny_after_any = acls(
            r#"{"view_tasks": [
                {"principals": {"type": "ANY"}, "users": {"type": "ANY"}},
                {"principals": {"type": "ANY"}, "users": {"type": "NONE"}}]}"#,
        );
        assert!(!deny_after_any.restricts(Action::ViewTasks));
        let deny = acls(
            r#"{"view_tasks": [{"principals": {"values": ["a"]}, "users": {"type": "NONE"}}]}"#,
        );
        assert!(deny.restricts(Action::ViewTasks));
    }

    #[test]
    fn parse_errors_are_clear() {
        let err = |text: &str| Acls::parse(text).expect_err(text).to_string();
        assert!(err("not json").contains("not valid JSON"));
        assert!(err("[]").contains("JSON object"));
        assert!(err(r#"{"permissive": "yes"}"#).contains("true or false"));
        assert!(err(r#"{"run_task": []}"#).contains("unknown key 'run_task'"));
        assert!(err(r#"{"create_volumes": []}"#).contains("does not enforce"));
        assert!(err(r#"{"run_tasks": {}}"#).contains("list of rules"));
        assert!(
            err(r#"{"run_tasks": [{"principals": {"type": "ANY"}}]}"#)
                .contains("run_tasks[0]: 'users' is required")
        );
        assert!(
            err(r#"{"run_tasks": [{"principals": {"type": "ANY"}, "roles": {"type": "ANY"}}]}"#)
                .contains("unknown field 'roles'")
        );
        assert!(
            err(r#"{"run_tasks": [{"principals": {"type": "ALL"}, "users": {"type": "ANY"}}]}"#)
                .contains("run_tasks[0].principals")
        );
        assert!(
            err(r#"{"run_tasks": [{"principals": {"values": [1]}, "users": {"type": "ANY"}}]}"#)
                .contains("list of strings")
        );
        assert!(
            err(r#"{"run_tasks": [{"principals": {"value": ["a"]}, "users": {"type": "ANY"}}]}"#)
                .contains("unknown field 'value'")
        );
    }

    #[test]
    fn flag_values_are_json_or_a_path() {
        assert_eq!(
            AclSource::from_flag(" {\"permissive\": true}"),
            AclSource::Json(" {\"permissive\": true}".into())
        );
        assert_eq!(
            AclSource::from_flag("file:///etc/agora/acls.json"),
            AclSource::File("/etc/agora/acls.json".into())
        );
        assert_eq!(
            AclSource::from_flag("acls.json"),
            AclSource::File("acls.json".into())
        );
    }

    fn entity() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(r#"{"type": "ANY"}"#.to_string()),
            Just(r#"{"type": "NONE"}"#.to_string()),
            proptest::collection::vec(prop_oneof![Just("a"), Just("b"), Just("c")], 0..3)
                .prop_map(|v| format!(r#"{{"values": {}}}"#, serde_json::json!(v))),
        ]
    }

    proptest! {
        #[test]
        fn the_parser_never_panics(text in ".{0,200}") {
            let _ = Acls::parse(&text);
        }

        #[test]
        fn the_parser_never_panics_on_json_shapes(
            key in prop_oneof![Just("run_tasks"), Just("permissive"), Just("x"), Just("register_frameworks")],
            inner in prop_oneof![
                Just("[]".to_string()), Just("{}".to_string()), Just("1".to_string()),
                Just("[{}]".to_string()), Just("[{\"principals\": 1}]".to_string()),
                Just("[{\"principals\": {}, \"roles\": {\"values\": [\"a/%\", \"%\", \"/%\"]}}]".to_string()),
            ],
        ) {
            let _ = Acls::parse(&format!("{{\"{key}\": {inner}}}"));
        }

        /// The answer is the first matching rule's, computed independently:
        /// with SOME values only ever containing a single subject and
        /// object, "matches" and "allows" reduce to simple membership.
        #[test]
        fn first_matching_rule_decides(
            rules in proptest::collection::vec((entity(), entity()), 0..5),
            permissive in any::<bool>(),
            subject in prop_oneof![Just(None), Just(Some("a")), Just(Some("b"))],
            object in prop_oneof![Just("a"), Just("b"), Just("c")],
        ) {
            let list: Vec<String> = rules
                .iter()
                .map(|(s, o)| format!(r#"{{"principals": {s}, "users": {o}}}"#))
                .collect();
            let text = format!(r#"{{"permissive": {permissive}, "run_tasks": [{}]}}"#, list.join(","));
            let acls = Acls::parse(&text).expect("generated ACLs are valid");
            let principal = subject.map(Principal::new);
            let got = acls.authorized(Action::RunTasks, principal.as_ref(), object);

            let parse = |e: &str| Entity::parse(&serde_json::from_str(e).expect("json"), "t").expect("entity");
            let mut expected = permissive;
            for (s, o) in &rules {
                let (s, o) = (parse(s), parse(o));
                let subject_matches = match (&s, subject) {
                    (Entity::Values(v), Some(name)) => v.iter().any(|x| x == name),
                    (Entity::Values(_), None) => false,
                    _ => true,
                };
                let object_matches = match &o {
                    Entity::Values(v) => v.iter().any(|x| x == object),
                    _ => true,
                };
                if subject_matches && object_matches {
                    let subject_allows = match (&s, subject) {
                        (Entity::Any, _) => true,
                        (Entity::None, _) => false,
                        (Entity::Values(_), Some(_)) => true,
                        (Entity::Values(_), None) => false,
                    };
                    expected = subject_allows && o != Entity::None;
                    break;
                }
            }
            prop_assert_eq!(got, expected);
            if !acls.restricts(Action::RunTasks) {
                prop_assert!(got);
            }
        }
    }
}
