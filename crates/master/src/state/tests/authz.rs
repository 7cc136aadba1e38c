//! The ACLs (`--acls`) in the state machine: each enforced action allowed
//! and refused, and what a refusal looks like.

use super::*;
use agora_allocator::Quota;
use agora_auth::Principal;
use agora_auth::acl::Acls;

fn with_acls(text: &str) -> Harness {
    let mut h = Harness::new();
    h.master.config.acls = std::sync::Arc::new(Acls::parse(text).expect("valid ACLs"));
    h
}

fn principal_info(name: &str, principal: &str, role: &str) -> pb::FrameworkInfo {
    let mut info = framework_info(name);
    info.principal = Some(principal.into());
    info.roles = vec![role.into()];
    info.capabilities.push(pb::framework_info::Capability {
        r#type: Some(pb::framework_info::capability::Type::MultiRole as i32),
    });
    info
}

fn as_user(mut task: pb::TaskInfo, user: &str) -> pb::TaskInfo {
    if let Some(command) = task.command.as_mut() {
        command.user = Some(user.into());
    }
    task
}

impl Harness {
    fn operator_by(
        &mut self,
        caller: Option<&str>,
        call: OperatorCall,
    ) -> (Result<(), OperatorError>, Vec<Effect>) {
        let mut out = Vec::new();
        let caller = caller.map(Principal::new);
        let result = self
            .master
            .operator_as(self.now(), caller.as_ref(), call, &mut out);
        (result, out)
    }
}

fn forbidden(result: Result<(), OperatorError>, needle: &str) {
    match result {
        Err(OperatorError::Forbidden(why)) => {
            assert!(why.contains(needle), "{why:?} should mention {needle:?}")
        }
        other => panic!("expected Forbidden, got {other:?}"),
    }
}

#[test]
fn register_frameworks_allows_and_refuses_each_role() {
    let mut h = with_acls(
        r#"{"register_frameworks": [
            {"principals": {"values": ["eng"]}, "roles": {"values": ["eng", "shared"]}},
            {"principals": {"type": "ANY"}, "roles": {"type": "NONE"}}
        ]}"#,
    );
    h.subscribe_ok(10, principal_info("ok", "eng", "eng"));

    let (result, out) = h.subscribe(11, principal_info("bad", "eng", "ops"));
    match result {
        Err(CallError::Unauthorized(why)) => {
            assert!(
                why.contains("principal 'eng'") && why.contains("role 'ops'"),
                "{why}"
            )
        }
        other => panic!("expected Unauthorized, got {other:?}"),
    }
    assert!(
        out.is_empty(),
        "a refused subscription changes nothing: {out:?}"
    );
    assert_eq!(h.master.frameworks.len(), 1);

    // Anonymous frameworks match only the ANY rule: refused.
    let mut anonymous = framework_info("anon");
    anonymous.roles = vec!["eng".into()];
    anonymous.capabilities.push(pb::framework_info::Capability {
        r#type: Some(pb::framework_info::capability::Type::MultiRole as i32),
    });
    let (result, _) = h.subscribe(12, anonymous);
    assert!(
        matches!(result, Err(CallError::Unauthorized(_))),
        "{result:?}"
    );

    // Every role must be allowed.
    let mut two = principal_info("two", "eng", "eng");
    two.roles.push("ops".into());
    let (result, _) = h.subscribe(13, two);
    assert!(
        matches!(result, Err(CallError::Unauthorized(_))),
        "{result:?}"
    );
}

#[test]
fn run_tasks_refuses_one_task_and_launches_the_others() {
    let mut h = with_acls(
        r#"{"run_tasks": [
            {"principals": {"values": ["eng"]}, "users": {"values": ["alice"]}},
            {"principals": {"type": "ANY"}, "users": {"type": "NONE"}}
        ]}"#,
    );
    let agent = h.register_agent(1, "a1", "cpus:2;mem:1024");
    let fw = h.subscribe_ok(10, principal_info("fw", "eng", "eng"));
    let offer = h.one_offer(&fw);
    let out = h.call_ok(
        &fw,
        launch_call(
            &fw.id,
            &[offer_id(&offer)],
            vec![
                // The framework's user (alice): allowed.
                command_task("ok", &agent, "cpus:0.5;mem:128"),
                // Its command's user decides: refused.
                as_user(command_task("root", &agent, "cpus:0.5;mem:128"), "root"),
            ],
            Some(0.0),
        ),
    );
    let launched = run_tasks(&out);
    assert_eq!(launched.len(), 1, "{out:?}");
    assert_eq!(
        launched[0].1.task.as_ref().and_then(|t| t.task_id.clone()),
        Some(pb::TaskId { value: "ok".into() })
    );
    let updates = updates_to(&out, fw.conn);
    assert_eq!(updates.len(), 1, "{updates:?}");
    assert_eq!(task_id_of(&updates[0]), "root");
    assert_eq!(state_of(&updates[0]), pb::TaskState::TaskError);
    assert_eq!(
        reason_of(&updates[0]),
        Some(pb::task_status::Reason::TaskUnauthorized)
    );
    assert!(
        updates[0]
            .message
            .as_deref()
            .is_some_and(|m| m.contains("user 'root'")),
        "{updates:?}"
    );
    assert!(h.task(&fw.id, "ok").is_some());
    assert!(h.task(&fw.id, "root").is_none());
    // The refused task's resources are not used.
    assert_eq!(h.used(&agent), res("cpus:0.5;mem:128"));
}

#[test]
fn reservations_in_an_accept_follow_reserve_resources() {
    let mut h = with_acls(
        r#"{"reserve_resources": [
            {"principals": {"values": ["eng"]}, "roles": {"values": ["eng"]}},
            {"principals": {"type": "ANY"}, "roles": {"type": "NONE"}}
        ]}"#,
    );
    let agent = h.register_agent(1, "a1", "cpus:2;mem:1024");
    let eng = h.subscribe_ok(10, principal_info("eng", "eng", "eng"));
    let offer = h.one_offer(&eng);
    h.call_ok(
        &eng,
        accept_ops(&eng.id, &offer, vec![reserve_op("cpus(eng):1")]),
    );
    assert_eq!(
        h.master.agents[&agent].total,
        res("cpus:1;mem:1024;cpus(eng, dynamic):1")
    );

    let mut h = with_acls(
        r#"{"reserve_resources": [
            {"principals": {"type": "ANY"}, "roles": {"type": "NONE"}}
        ]}"#,
    );
    let agent = h.register_agent(1, "a1", "cpus:2;mem:1024");
    let eng = h.subscribe_ok(10, principal_info("eng", "eng", "eng"));
    let offer = h.one_offer(&eng);
    let (result, _) = h.call(
        &eng,
        accept_ops(&eng.id, &offer, vec![reserve_op("cpus(eng):1")]),
    );
    assert!(
        matches!(&result, Err(CallError::Unauthorized(why)) if why.contains("reserve resources for role 'eng'")),
        "{result:?}"
    );
    assert_eq!(h.master.agents[&agent].total, res("cpus:2;mem:1024"));
}

#[test]
fn operator_changes_follow_their_acls() {
    let mut h = with_acls(
        r#"{
        "update_weights": [{"principals": {"values": ["ops"]}, "roles": {"type": "ANY"}},
                           {"principals": {"type": "ANY"}, "roles": {"type": "NONE"}}],
        "update_quotas": [{"principals": {"values": ["ops"]}, "roles": {"values": ["eng"]}},
                          {"principals": {"type": "ANY"}, "roles": {"type": "NONE"}}],
        "reserve_resources": [{"principals": {"values": ["ops"]}, "roles": {"type": "ANY"}},
                              {"principals": {"type": "ANY"}, "roles": {"type": "NONE"}}],
        "unreserve_resources": [{"principals": {"values": ["ops"]}, "reserver_principals": {"type": "ANY"}},
                                {"principals": {"type": "ANY"}, "reserver_principals": {"type": "NONE"}}],
        "mark_agents_gone": [{"principals": {"values": ["ops"]}, "agents": {"type": "ANY"}},
                             {"principals": {"type": "ANY"}, "agents": {"type": "NONE"}}]
        }"#,
    );
    let agent = h.register_agent(1, "a1", "cpus:2;mem:1024");

    let weights = || OperatorCall::SetWeights(vec![("eng".into(), 2.0)]);
    forbidden(
        h.operator_by(Some("dev"), weights()).0,
        "weight of role 'eng'",
    );
    forbidden(h.operator_by(None, weights()).0, "an anonymous caller");
    assert_eq!(h.operator_by(Some("ops"), weights()).0, Ok(()));

    let quota = |role: &str| OperatorCall::UpdateQuotas {
        quotas: vec![(
            role.into(),
            Quota {
                guarantee: res("cpus:1"),
                limit: res("cpus:1"),
            },
        )],
        force: false,
    };
    forbidden(h.operator_by(Some("ops"), quota("web")).0, "role 'web'");
    assert_eq!(h.operator_by(Some("ops"), quota("eng")).0, Ok(()));
    forbidden(
        h.operator_by(Some("dev"), OperatorCall::RemoveQuota("eng".into()))
            .0,
        "quota of role 'eng'",
    );
    assert_eq!(
        h.operator_by(Some("ops"), OperatorCall::RemoveQuota("eng".into()))
            .0,
        Ok(())
    );

    let reserve = |reserve: bool| {
        let (agent_id, resources) = (agent.to_string(), res("cpus(eng):1"));
        if reserve {
            OperatorCall::Reserve {
                agent_id,
                resources,
            }
        } else {
            OperatorCall::Unreserve {
                agent_id,
                resources,
            }
        }
    };
    forbidden(h.operator_by(Some("dev"), reserve(true)).0, "reserve");
    assert_eq!(h.operator_by(Some("ops"), reserve(true)).0, Ok(()));
    forbidden(h.operator_by(Some("dev"), reserve(false)).0, "unreserve");
    assert_eq!(h.operator_by(Some("ops"), reserve(false)).0, Ok(()));

    let gone = || OperatorCall::MarkAgentGone {
        agent_id: agent.to_string(),
    };
    forbidden(h.operator_by(Some("dev"), gone()).0, "mark agent");
    assert!(h.master.agents.contains_key(&agent));
    assert_eq!(h.operator_by(Some("ops"), gone()).0, Ok(()));
}

#[test]
fn teardown_and_kill_follow_the_frameworks_principal() {
    let mut h = with_acls(
        r#"{
        "teardown_frameworks": [
            {"principals": {"values": ["ops"]}, "framework_principals": {"type": "ANY"}},
            {"principals": {"values": ["eng-lead"]}, "framework_principals": {"values": ["eng"]}},
            {"principals": {"type": "ANY"}, "framework_principals": {"type": "NONE"}}],
        "kill_tasks": [
            {"principals": {"values": ["eng-lead"]}, "framework_principals": {"values": ["eng"]}},
            {"principals": {"type": "ANY"}, "framework_principals": {"type": "NONE"}}]
        }"#,
    );
    let agent = h.register_agent(1, "a1", "cpus:2;mem:1024");
    let eng = h.subscribe_ok(10, principal_info("eng", "eng", "eng"));
    let web = h.subscribe_ok(11, principal_info("web", "web", "web"));
    let offer = h.one_offer(&eng);
    launch_one(
        &mut h,
        &eng,
        &offer,
        command_task("t1", &agent, "cpus:1;mem:128"),
    );

    let kill = || OperatorCall::KillTask {
        framework_id: None,
        task_id: "t1".into(),
        reason: None,
    };
    forbidden(h.operator_by(Some("ops"), kill()).0, "kill task t1");
    forbidden(h.operator_by(None, kill()).0, "kill task t1");
    assert_eq!(h.operator_by(Some("eng-lead"), kill()).0, Ok(()));

    let teardown = |fw: &Fw| OperatorCall::Teardown {
        framework_id: fw.id.to_string(),
    };
    forbidden(
        h.operator_by(Some("eng-lead"), teardown(&web)).0,
        "tear down framework",
    );
    assert!(h.master.frameworks.contains_key(&web.id));
    assert_eq!(h.operator_by(Some("eng-lead"), teardown(&eng)).0, Ok(()));
    assert_eq!(h.operator_by(Some("ops"), teardown(&web)).0, Ok(()));
    assert!(h.master.frameworks.is_empty());
}

#[test]
fn without_acls_everyone_may_do_everything() {
    let mut h = Harness::new();
    let agent = h.register_agent(1, "a1", "cpus:2;mem:1024");
    let fw = h.subscribe_ok(10, principal_info("fw", "anyone", "eng"));
    let offer = h.one_offer(&fw);
    launch_one(
        &mut h,
        &fw,
        &offer,
        as_user(command_task("t1", &agent, "cpus:1;mem:128"), "root"),
    );
    assert_eq!(
        h.operator_by(
            None,
            OperatorCall::Teardown {
                framework_id: fw.id.to_string()
            }
        )
        .0,
        Ok(())
    );
}

#[test]
fn register_agents_admits_only_allowed_principals() {
    let mut h = with_acls(
        r#"{"register_agents": [
            {"principals": {"values": ["agent"]}, "agents": {"type": "ANY"}},
            {"principals": {"type": "ANY"}, "agents": {"type": "NONE"}}
        ]}"#,
    );
    let register = |h: &mut Harness, conn: ConnId, principal: Option<&str>| {
        let mut out = Vec::new();
        let principal = principal.map(Principal::new);
        let id = h.master.agent_register_as(
            h.now(),
            conn,
            register_msg(agent_info(&format!("a{conn}"), "cpus:1;mem:64")),
            principal.as_ref(),
            &mut out,
        );
        (id, out)
    };
    let (id, out) = register(&mut h, 1, Some("intruder"));
    assert_eq!(id, None);
    assert!(
        matches!(&agent_messages(&out, 1)[..], [master_message::Kind::Refused(r)]
            if r.message.contains("principal 'intruder' is not authorized to register agents")),
        "{out:?}"
    );
    assert!(out.contains(&Effect::CloseAgent { conn: 1 }), "{out:?}");
    let (id, _) = register(&mut h, 2, None);
    assert_eq!(id, None, "anonymous agents match the NONE rule");
    assert!(h.master.agents.is_empty());
    let (id, _) = register(&mut h, 3, Some("agent"));
    assert!(id.is_some());
}
