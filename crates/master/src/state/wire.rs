//! Every event the master sends a framework fits in one gRPC message
//! ([`agora_net::MAX_MESSAGE_BYTES`]): a peer cannot decode a larger one and
//! its stream ends, so the event would be lost and the subscription with it.
//!
//! *Invariant:* `push_event` (in the parent module) is the one place an
//! `Effect::ToFramework` is made, and it sends only what [`fit_event`]
//! returns. Lists are split before they get there ([`pack_offers`]: several
//! OFFERS events, each under the limit); what one event carries on behalf
//! of a peer (an UPDATE's `data`, an executor's MESSAGE) is bounded where
//! it enters, and cut or dropped here if it still grew past the limit.

use agora_proto::v1 as pb;
use agora_proto::v1::scheduler as sched;
use prost::Message as _;

/// The largest event, encoded, a framework is sent.
pub(super) const MAX_EVENT_BYTES: usize = agora_net::MAX_MESSAGE_BYTES;

/// Longest `message` an UPDATE keeps when it must be cut to fit.
const CUT_MESSAGE_BYTES: usize = 1024;

/// The bytes a length-delimited field of `len` bytes takes in its parent,
/// for field numbers below 16 (one byte of key).
pub(super) fn field_len(len: usize) -> usize {
    1 + prost::encoding::encoded_len_varint(len as u64) + len
}

/// The encoded size of an OFFERS event whose `Offers` body is `body` bytes:
/// `Event { type (1): OFFERS, offers (3): { offers (1): [...] } }`.
fn offers_event_len(body: usize) -> usize {
    let kind = sched::Event {
        r#type: sched::event::Type::Offers as i32,
        ..Default::default()
    };
    kind.encoded_len() + field_len(body)
}

/// The encoded size of an OFFERS event carrying `offer` alone.
fn single_offer_event_len(offer: &pb::Offer) -> usize {
    offers_event_len(field_len(offer.encoded_len()))
}

/// Whether any offer of an agent with `hostname`, `attributes` and `total`
/// resources fits in one event: measured with the longest ids and role
/// there can be, against half the limit, since reservations made later may
/// split its entries (each then carrying a role). Checked at registration,
/// so that [`pack_offers`] never meets an offer too large to send.
pub(super) fn check_offer_size(
    hostname: &str,
    attributes: &[pb::Attribute],
    total: &agora_core::Resources,
) -> Result<(), String> {
    let id = "i".repeat(agora_core::ids::MAX_ID_LEN);
    let role = "r".repeat(agora_core::role::MAX_ROLE_LEN);
    let offer = pb::Offer {
        id: Some(pb::OfferId { value: id.clone() }),
        framework_id: Some(pb::FrameworkId { value: id.clone() }),
        agent_id: Some(pb::AgentId { value: id }),
        hostname: hostname.to_string(),
        resources: total.to_proto(Some(&role)),
        attributes: attributes.to_vec(),
        executor_ids: Vec::new(),
        allocation_info: Some(pb::resource::AllocationInfo { role: Some(role) }),
    };
    let len = single_offer_event_len(&offer);
    let limit = MAX_EVENT_BYTES / 2;
    if len > limit {
        return Err(format!(
            "an offer of its resources and attributes could take {len} bytes, more than the {limit} allowed; advertise fewer ranges, set items or attributes"
        ));
    }
    Ok(())
}

fn offers_event(offers: Vec<pb::Offer>) -> sched::Event {
    sched::Event {
        r#type: sched::event::Type::Offers as i32,
        offers: Some(sched::event::Offers { offers }),
        ..Default::default()
    }
}

/// Packs `offers`, in order, into as few OFFERS events as fit in `budget`
/// bytes each. An offer too large to fit even alone is returned apart (the
/// master refuses agents whose offers could be, so that list is empty).
pub(super) fn pack_offers(
    offers: Vec<pb::Offer>,
    budget: usize,
) -> (Vec<sched::Event>, Vec<pb::Offer>) {
    let mut events = Vec::new();
    let mut oversized = Vec::new();
    let mut batch = Vec::new();
    let mut body = 0usize;
    for offer in offers {
        let len = field_len(offer.encoded_len());
        if offers_event_len(len) > budget {
            oversized.push(offer);
            continue;
        }
        if offers_event_len(body.saturating_add(len)) > budget {
            events.push(offers_event(std::mem::take(&mut batch)));
            body = 0;
        }
        body += len;
        batch.push(offer);
    }
    if !batch.is_empty() {
        events.push(offers_event(batch));
    }
    (events, oversized)
}

/// `event` as it can be sent: unchanged if it fits; an UPDATE without its
/// `data` and with its message cut (the state change still reaches the
/// framework); anything else that does not fit, `None`.
pub(super) fn fit_event(mut event: sched::Event) -> Option<sched::Event> {
    if event.encoded_len() <= MAX_EVENT_BYTES {
        return Some(event);
    }
    let status = event.update.as_mut().and_then(|u| u.status.as_mut())?;
    status.data = None;
    if let Some(message) = status.message.as_mut()
        && message.len() > CUT_MESSAGE_BYTES
    {
        let mut end = CUT_MESSAGE_BYTES;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
    }
    (event.encoded_len() <= MAX_EVENT_BYTES).then_some(event)
}
