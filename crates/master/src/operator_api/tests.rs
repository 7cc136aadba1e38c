//! The operators' event streams as the actor keeps them: the bound closes
//! the oldest, a gone one is dropped. The API's calls over a real actor are
//! tested in `actor/operator_api_tests.rs`.

use std::sync::Arc;

use agora_net::outbox::outbox;
use agora_proto::v1::master::{Event, event};

use super::Subscribers;

#[tokio::test]
async fn the_oldest_subscriber_is_closed_past_the_bound_and_a_gone_one_is_dropped() {
    let mut subscribers = Subscribers::new(2);
    let (a, mut a_rx) = outbox();
    let (b, mut b_rx) = outbox();
    let (c, c_rx) = outbox();
    subscribers.add(1, a);
    subscribers.add(2, b);
    subscribers.add(3, c);
    assert_eq!(subscribers.len(), 2);
    // The oldest's stream ends.
    assert!(a_rx.recv().await.is_none());
    let event = Arc::new(Event {
        r#type: event::Type::Heartbeat as i32,
        ..Default::default()
    });
    subscribers.send(event.clone());
    assert!(b_rx.recv().await.is_some_and(|e| e.is_ok()));
    // One that left is dropped at the next event.
    drop(c_rx);
    subscribers.send(event);
    assert_eq!(subscribers.len(), 1);
    subscribers.remove(2);
    assert!(subscribers.is_empty());
    assert!(
        b_rx.recv().await.is_some(),
        "what was queued is still taken"
    );
    assert!(b_rx.recv().await.is_none());
}
