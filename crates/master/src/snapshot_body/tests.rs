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
    RopeBody::new(rope)
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
    assert_eq!(hints, vec![11, 0], "three small pieces, one frame");
}

/// The lengths of the frames a body gives.
fn frame_lengths(mut body: RopeBody) -> Vec<usize> {
    let mut cx = Context::from_waker(Waker::noop());
    let mut lengths = Vec::new();
    while let Poll::Ready(Some(Ok(frame))) = Pin::new(&mut body).poll_frame(&mut cx) {
        lengths.push(frame.data_ref().map_or(0, Bytes::len));
    }
    lengths
}

#[test]
fn small_pieces_go_out_together_and_long_ones_alone() {
    let small = super::SMALL_PIECE / 4;
    let long = super::SMALL_PIECE;
    let piece = |len: usize, byte: u8| Bytes::from(vec![byte; len]);
    // Small pieces until a frame is full, a long one, two small ones, a
    // long one, one small one at the end.
    let per_frame = super::FRAME / small;
    let mut pieces: Vec<Bytes> = (0..per_frame + 1).map(|i| piece(small, i as u8)).collect();
    pieces.push(piece(long, 200));
    pieces.push(piece(small, 201));
    pieces.push(piece(3, 202));
    pieces.push(piece(long + 1, 203));
    pieces.push(piece(7, 204));
    let rope = Rope::from(pieces.clone());
    let whole = rope.to_vec();
    assert_eq!(
        frame_lengths(body_of(rope.clone())),
        vec![super::FRAME, small, long, small + 3, long + 1, 7]
    );
    let (sent, hints) = frames(body_of(rope));
    assert_eq!(sent, whole, "the same bytes in the same order");
    assert_eq!(hints.first(), Some(&(whole.len() as u64)));
    assert_eq!(hints.last(), Some(&0));
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

#[tokio::test]
async fn a_caches_bodies_are_made_on_one_thread_that_outlives_a_panic() {
    let cache: SnapshotBody<String, ()> = SnapshotBody::default();
    let snapshot = |id: &str| {
        Arc::new(StateSnapshot {
            id: id.to_owned(),
            ..StateSnapshot::default()
        })
    };
    let thread_of =
        |_: &StateSnapshot, _: &mut ()| Ok(format!("{:?}", std::thread::current().id()));
    let first = cache.get(snapshot("one"), thread_of).await.expect("made");
    let second = cache.get(snapshot("two"), thread_of).await.expect("made");
    assert_eq!(first, second, "one thread makes a cache's bodies");
    assert_ne!(first, format!("{:?}", std::thread::current().id()));

    let panicked = cache
        .get(
            snapshot("three"),
            |_: &StateSnapshot, _: &mut ()| -> serde_json::Result<String> {
                panic!("a body that panics (on purpose)")
            },
        )
        .await;
    let Err(response) = panicked else {
        panic!("a panicking body is an error")
    };
    assert_eq!(
        response.status(),
        axum::http::StatusCode::INTERNAL_SERVER_ERROR
    );
    let after = cache
        .get(snapshot("four"), thread_of)
        .await
        .expect("made after the panic");
    assert_eq!(after, first, "the same thread goes on");
}
