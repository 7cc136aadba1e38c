//! ACL parsing and decisions: the Mesos JSON shapes, matching by principal
//! and object, permissive defaults, and properties over generated rules.

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
    let allow_some =
        acls(r#"{"view_tasks": [{"principals": {"values": ["a"]}, "users": {"values": ["u"]}}]}"#);
    assert!(!allow_some.restricts(Action::ViewTasks));
    let deny_after_any = acls(
        r#"{"view_tasks": [
            {"principals": {"type": "ANY"}, "users": {"type": "ANY"}},
            {"principals": {"type": "ANY"}, "users": {"type": "NONE"}}]}"#,
    );
    assert!(!deny_after_any.restricts(Action::ViewTasks));
    let deny =
        acls(r#"{"view_tasks": [{"principals": {"values": ["a"]}, "users": {"type": "NONE"}}]}"#);
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
