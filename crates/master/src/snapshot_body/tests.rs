use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};

use axum::body::Bytes;
use http_body::Body as _;

use super::{RopeBody, SnapshotBody};
use crate::snapshot::StateSnapshot;
use crate::snapshot::state_body::Rope;

fn body_of(rope: Rope) -> RopeBody {
    let remaining = rope.len() as u64;
    RopeBody {
        rope,
        next: 0,
        remaining,
    }
}

/// Every frame the body gives, in order, and the exact length it claimed
/// before each.
fn frames(mut body: RopeBody) -> (Vec<u8>, Vec<u64>) {
    let mut cx = Context::from_waker(Waker::noop());
    let mut sent = Vec::new();
    let mut hints = Vec::new();
    loop {
        hints.push(body.size_hint().exact().expect("an exact length"));
        match Pin::new(&mut body).poll_frame(&mut cx) {
            Poll::Ready(Some(Ok(frame))) => {
                sent.extend_from_slice(frame.data_ref().expect("a data frame"));
            }
            Poll::Ready(None) => break,
            Poll::Pending => panic!("a rope never waits"),
        }
    }
    assert!(body.is_end_stream());
    (sent, hints)
}

#[test]
fn a_rope_body_sends_its_pieces_in_order_with_its_length_known() {
    let pieces = vec![
        Bytes::from_static(b"{\"a\":["),
        Bytes::new(),
        Bytes::from_static(b"1,2"),
        Bytes::from_static(b"]}"),
    ];
    let rope = Rope::from(pieces);
    assert_eq!(rope.pieces().len(), 3, "empty pieces are dropped");
    let (sent, hints) = frames(body_of(rope));
    assert_eq!(sent, b"{\"a\":[1,2]}");
    assert_eq!(hints, vec![11, 5, 2, 0]);
}

#[test]
fn an_empty_rope_is_an_empty_body() {
    let body = body_of(Rope::default());
    assert!(body.is_end_stream());
    let (sent, hints) = frames(body);
    assert!(sent.is_empty());
    assert_eq!(hints, vec![0]);
}

#[tokio::test]
async fn a_body_is_made_once_per_snapshot_and_hands_on_what_it_kept() {
    let cache: SnapshotBody<Bytes, usize> = SnapshotBody::default();
    let makings = Arc::new(AtomicUsize::new(0));
    let make = |makings: Arc<AtomicUsize>| {
        move |s: &StateSnapshot, kept: &mut usize| {
            makings.fetch_add(1, Ordering::SeqCst);
            *kept += 1;
            Ok(Bytes::from(format!("{}:{kept}", s.id)))
        }
    };
    let first = Arc::new(StateSnapshot {
        id: "one".to_owned(),
        ..StateSnapshot::default()
    });
    let a = cache.get(first.clone(), make(makings.clone())).await;
    let b = cache.get(first.clone(), make(makings.clone())).await;
    assert_eq!(a.ok(), Some(Bytes::from_static(b"one:1")));
    assert_eq!(b.ok(), Some(Bytes::from_static(b"one:1")));
    assert_eq!(makings.load(Ordering::SeqCst), 1);

    let second = Arc::new(StateSnapshot {
        id: "two".to_owned(),
        ..StateSnapshot::default()
    });
    let c = cache.get(second, make(makings.clone())).await;
    // The second making got what the first kept.
    assert_eq!(c.ok(), Some(Bytes::from_static(b"two:2")));
    assert_eq!(makings.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_failed_body_is_a_500_and_is_not_kept() {
    let cache: SnapshotBody<Bytes> = SnapshotBody::default();
    let current = Arc::new(StateSnapshot::default());
    let failed = cache
        .get(current.clone(), |_, _| {
            Err(serde::ser::Error::custom("fails on purpose"))
        })
        .await;
    let status = failed.err().map(|r| r.status());
    assert_eq!(status, Some(axum::http::StatusCode::INTERNAL_SERVER_ERROR));
    let again = cache
        .get(current, |_, _| Ok(Bytes::from_static(b"made")))
        .await;
    assert_eq!(again.ok(), Some(Bytes::from_static(b"made")));
}
