//! Every event a framework is sent fits in one gRPC message: thousands of
//! offers at once are split into several OFFERS events, an agent whose
//! offers could not fit is refused, and forwarded payloads that grew past
//! the limit are cut (UPDATE) or dropped (MESSAGE), never sent to break the
//! framework's stream.

use prost::Message as _;

use super::super::wire;
use super::*;

const LIMIT: usize = agora_net::MAX_MESSAGE_BYTES;

/// An agent whose offers are about `bytes` large, through one text attribute.
fn bulky_agent(hostname: &str, bytes: usize) -> pb::AgentInfo {
    let mut info = agent_info(hostname, "cpus:2;mem:1024");
    info.attributes = vec![pb::Attribute {
        name: "rack".into(),
        r#type: Some(pb::value::Type::Text as i32),
        text: Some(pb::value::Text {
            value: "x".repeat(bytes),
        }),
        ..Default::default()
    }];
    info
}

#[test]
fn offers_larger_than_one_message_are_split_into_events_under_the_limit() {
    let mut h = Harness::new();
    // 40 agents with offers of ~200 KiB each: ~8 MiB of offers at once.
    let agents: Vec<AgentId> = (0..40)
        .map(|n| {
            let (id, _) = h.register(
                n + 1,
                register_msg(bulky_agent(&format!("a{n}"), 200 << 10)),
            );
            id.expect("agent registered")
        })
        .collect();
    let fw = h.subscribe_framework(100, "fw");
    let out = h.allocate();
    let events = events_of_type(&out, fw.conn, EventType::Offers);
    assert!(
        events.len() >= 2,
        "offers split over several events, got {}",
        events.len()
    );
    for event in &events {
        assert!(
            event.encoded_len() <= LIMIT,
            "an OFFERS event of {} bytes is over the {LIMIT}-byte limit",
            event.encoded_len()
        );
    }
    // Every agent is offered exactly once, and every offer sent is on the books.
    let offers = offers_to(&out, fw.conn);
    let offered: BTreeSet<String> = offers
        .iter()
        .map(|o| o.agent_id.as_ref().expect("agent id").value.clone())
        .collect();
    let expected: BTreeSet<String> = agents.iter().map(|a| a.to_string()).collect();
    assert_eq!(offers.len(), agents.len());
    assert_eq!(offered, expected);
    for offer in &offers {
        let id = OfferId::from_field(&offer.id).expect("offer id");
        assert!(
            h.master.offers.contains_key(&id),
            "offer {id} sent but not on the books"
        );
    }
    assert_eq!(h.master.counters.offers_sent, agents.len() as u64);
}

#[test]
fn packed_offers_fill_each_event_up_to_the_budget_and_keep_their_order() {
    let offer = |n: usize| pb::Offer {
        id: Some(pb::OfferId {
            value: format!("o{n}"),
        }),
        hostname: "h".repeat(100 + n),
        ..Default::default()
    };
    let offers: Vec<pb::Offer> = (0..50).map(offer).collect();
    let budget = 1000;
    let (events, oversized) = wire::pack_offers(offers.clone(), budget);
    assert!(oversized.is_empty());
    assert!(events.len() > 1);
    let mut sent = Vec::new();
    for (i, event) in events.iter().enumerate() {
        assert!(event.encoded_len() <= budget);
        let batch = &event.offers.as_ref().expect("offers").offers;
        assert!(!batch.is_empty());
        // Full: the next offer would not have fit in this event.
        if let Some(next) = events.get(i + 1) {
            let mut fuller = (*event).clone();
            let first = next.offers.as_ref().expect("offers").offers[0].clone();
            fuller.offers.as_mut().expect("offers").offers.push(first);
            assert!(
                fuller.encoded_len() > budget,
                "event {i} could hold one more offer"
            );
        }
        sent.extend(batch.iter().cloned());
    }
    assert_eq!(sent, offers);
    // An offer too large for any event is handed back, not sent.
    let (events, oversized) = wire::pack_offers(vec![offer(5000)], budget);
    assert!(events.is_empty());
    assert_eq!(oversized.len(), 1);
}

#[test]
fn an_agent_whose_offers_could_not_fit_in_one_message_is_refused() {
    let mut h = Harness::new();
    let (id, out) = h.register(1, register_msg(bulky_agent("big", LIMIT / 2)));
    assert_eq!(id, None);
    let messages = agent_messages(&out, 1);
    assert!(
        matches!(&messages[..], [master_message::Kind::Refused(r)] if r.message.contains("too large to offer")),
        "expected a refusal, got {messages:?}"
    );
    assert!(out.contains(&Effect::CloseAgent { conn: 1 }));
    assert!(h.master.agents.is_empty());
    // One of a fair size is admitted.
    let (id, _) = h.register(2, register_msg(bulky_agent("fair", 64 << 10)));
    assert!(id.is_some());
}

#[test]
fn an_update_too_large_to_forward_loses_its_data_not_its_state() {
    let (mut h, agent, fw, offer) = one_agent_one_offer();
    launch_one(&mut h, &fw, &offer, command_task("t1", &agent, "cpus:1"));
    let mut update = status_update(&fw.id, "t1", pb::TaskState::TaskRunning, Some(uuid(1)));
    if let agent_message::Kind::StatusUpdate(u) = &mut update {
        let status = u.status.as_mut().expect("status");
        status.data = Some(vec![b'd'; LIMIT]);
        status.message = Some("m".repeat(10_000));
    }
    let out = h.agent_says(1, update);
    let events = events_of_type(&out, fw.conn, EventType::Update);
    assert_eq!(events.len(), 1, "the update is still forwarded");
    assert!(events[0].encoded_len() <= LIMIT);
    let status = updates_to(&out, fw.conn).pop().expect("status");
    assert_eq!(state_of(&status), pb::TaskState::TaskRunning);
    assert_eq!(status.uuid, Some(uuid(1)), "still acknowledgeable");
    assert_eq!(status.data, None);
    assert_eq!(
        h.task(&fw.id, "t1").map(|t| t.state),
        Some(pb::TaskState::TaskRunning)
    );
}

#[test]
fn messages_too_large_for_their_peer_are_refused_or_dropped() {
    let (mut h, agent, fw, _offer) = one_agent_one_offer();
    // An executor's message that would not fit in an event is not sent.
    let out = h.agent_says(
        1,
        agent_message::Kind::ExecutorMessage(agent_message::ExecutorMessage {
            framework_id: fw.id.to_field(),
            executor_id: Some(pb::ExecutorId { value: "e".into() }),
            data: vec![b'x'; LIMIT],
        }),
    );
    assert!(
        events_to(&out, fw.conn).is_empty(),
        "oversized MESSAGE dropped: {out:?}"
    );
    // A framework's message that would not fit in the agent's is refused.
    let mut call = base_call(&fw.id, CallType::Message);
    call.message = Some(sched::call::Message {
        agent_id: agent.to_field(),
        executor_id: Some(pb::ExecutorId { value: "e".into() }),
        data: vec![b'x'; LIMIT],
    });
    let (result, out) = h.call(&fw, call);
    assert_error(result, ErrKind::InvalidArgument, "a message may carry");
    assert!(agent_messages(&out, 1).is_empty());
}
