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
#[path = "acl_tests.rs"]
mod tests;
