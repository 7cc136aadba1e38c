//! Times the file registry store: N puts of fresh keys with values of a given
//! size, awaited one at a time or with several in flight, then a reopen.
//!
//! ```text
//! cargo run --release -p agora-coord --example registry_puts -- [PUTS] [VALUE_BYTES] [IN_FLIGHT] [DIR]
//! ```
//!
//! Defaults: 10,000 puts of 300 bytes, one at a time, in a temporary
//! directory (give DIR to measure a particular disk; it must not hold a
//! registry yet).

use std::time::Instant;

use agora_coord::{FileRegistryStore, RegistryStore};
use futures::StreamExt as _;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let puts: usize = args.next().map_or(Ok(10_000), |a| a.parse())?;
    let value_bytes: usize = args.next().map_or(Ok(300), |a| a.parse())?;
    let in_flight: usize = args.next().map_or(Ok(1), |a| a.parse())?;
    let temp = tempfile::tempdir()?;
    let dir = args
        .next()
        .map_or_else(|| temp.path().join("registry"), Into::into);

    let store = FileRegistryStore::new(&dir);
    let value = vec![b'x'; value_bytes];
    let started = Instant::now();
    let mut writes = futures::stream::iter(0..puts)
        .map(|i| {
            let store = &store;
            let value = value.clone();
            async move {
                let key = format!("agent:{i:08}");
                store.put(&key, value, None).await
            }
        })
        .buffer_unordered(in_flight.max(1));
    while let Some(result) = writes.next().await {
        result?;
    }
    drop(writes);
    let elapsed = started.elapsed();
    println!(
        "{puts} puts of {value_bytes} bytes, {in_flight} in flight: {:.3} s ({:.1} us per put)",
        elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1e6 / puts as f64
    );

    let started = Instant::now();
    let loaded = FileRegistryStore::new(&dir).load().await?;
    println!(
        "reopen and load {} entries: {:.3} s",
        loaded.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
