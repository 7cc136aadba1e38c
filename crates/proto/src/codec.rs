//! The gRPC codec of every Agora service: prost's encoding, with buffers
//! that start small.
//!
//! tonic gives each stream an encode and a decode buffer of 8 KiB from the
//! start, so a master holding 10,000 agent sessions kept 160 MB in buffers
//! that the sessions' messages (pings, pongs, a few status updates) barely
//! use. Here they start at [`INITIAL_BUFFER`] and grow to the largest
//! message a stream carries, as tonic's do beyond 8 KiB.

use std::marker::PhantomData;

use tonic::codec::{BufferSettings, Codec};
use tonic_prost::{ProstDecoder, ProstEncoder};

/// Bytes each stream's encode and decode buffers start with.
pub const INITIAL_BUFFER: usize = 1024;
/// Bytes encoded before a stream yields to other tasks (tonic's default).
const YIELD_THRESHOLD: usize = 32 * 1024;

fn settings() -> BufferSettings {
    BufferSettings::new(INITIAL_BUFFER, YIELD_THRESHOLD)
}

/// Encodes `T`, decodes `U` (the generated clients and servers name it).
#[derive(Debug, Clone)]
pub struct SmallBufferCodec<T, U> {
    _types: PhantomData<(T, U)>,
}

impl<T, U> Default for SmallBufferCodec<T, U> {
    fn default() -> Self {
        Self {
            _types: PhantomData,
        }
    }
}

impl<T, U> Codec for SmallBufferCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(settings())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::new(settings())
    }
}
