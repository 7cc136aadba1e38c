//! Authenticated subscriptions: a framework's principal is the one it
//! authenticated as, and it cannot change across subscriptions.

use super::*;
use agora_auth::Principal;

fn subscribe_as(
    h: &mut Harness,
    conn: ConnId,
    info: pb::FrameworkInfo,
    principal: Option<&str>,
) -> Result<FrameworkId, CallError> {
    let principal = principal.map(Principal::new);
    let mut out = Vec::new();
    h.master.subscribe_as(
        h.now(),
        conn,
        stream_of(conn),
        subscribe_call(info),
        principal.as_ref(),
        &mut out,
    )
}

fn with_principal(name: &str, principal: Option<&str>) -> pb::FrameworkInfo {
    pb::FrameworkInfo {
        principal: principal.map(str::to_string),
        ..framework_info(name)
    }
}

#[test]
fn authenticated_principal_must_match_framework_info_principal() {
    let mut h = Harness::new();
    let refused = subscribe_as(
        &mut h,
        1,
        with_principal("fw", Some("other")),
        Some("spark"),
    );
    assert!(
        matches!(&refused, Err(CallError::InvalidArgument(m)) if m.contains("'spark'") && m.contains("'other'")),
        "{refused:?}"
    );
    let unset = subscribe_as(&mut h, 2, with_principal("fw", None), Some("spark"));
    assert!(
        matches!(&unset, Err(CallError::InvalidArgument(_))),
        "{unset:?}"
    );
    assert!(h.master.frameworks.is_empty(), "nothing was subscribed");

    let id = subscribe_as(
        &mut h,
        3,
        with_principal("fw", Some("spark")),
        Some("spark"),
    )
    .expect("the matching principal subscribes");
    assert!(h.master.frameworks.contains_key(&id));
}

#[test]
fn a_framework_cannot_change_its_principal_when_it_subscribes_again() {
    let mut h = Harness::new();
    let id = subscribe_as(
        &mut h,
        1,
        with_principal("fw", Some("spark")),
        Some("spark"),
    )
    .expect("subscribed");

    // Another principal re-subscribing with the framework's id is refused,
    // and the framework keeps its connection.
    let mut info = with_principal("fw", Some("mallory"));
    info.id = id.to_field();
    let refused = subscribe_as(&mut h, 2, info.clone(), Some("mallory"));
    assert!(
        matches!(&refused, Err(CallError::InvalidArgument(m)) if m.contains("principal")),
        "{refused:?}"
    );
    assert_eq!(h.master.frameworks[&id].conn, Some(1));
    assert_eq!(
        h.master.frameworks[&id].info.principal.as_deref(),
        Some("spark")
    );

    // Unauthenticated, the principal still cannot change.
    let refused = subscribe_as(&mut h, 3, info, None);
    assert!(matches!(refused, Err(CallError::InvalidArgument(_))));

    // The same principal fails over.
    let mut info = with_principal("fw", Some("spark"));
    info.id = id.to_field();
    assert_eq!(subscribe_as(&mut h, 4, info, Some("spark")), Ok(id.clone()));
    assert_eq!(h.master.frameworks[&id].conn, Some(4));
}

#[test]
fn calls_must_come_from_the_frameworks_principal() {
    let mut h = Harness::new();
    let id = subscribe_as(
        &mut h,
        1,
        with_principal("fw", Some("spark")),
        Some("spark"),
    )
    .expect("subscribed");
    let call = base_call(&id, CallType::Revive);
    assert_eq!(
        h.master
            .check_call_principal(&call, Some(&Principal::new("spark"))),
        Ok(())
    );
    // Not authenticated: left to the stream id, as before.
    assert_eq!(h.master.check_call_principal(&call, None), Ok(()));
    let refused = h
        .master
        .check_call_principal(&call, Some(&Principal::new("mallory")));
    assert!(
        matches!(&refused, Err(CallError::InvalidArgument(m)) if m.contains("'mallory'") && m.contains("'spark'")),
        "{refused:?}"
    );
}
