//! Two-level scheduling by example: count the lines of a file that contain
//! the letter `a`, split into chunks that run as tasks across the agents.
//!
//! ```text
//! cargo run -p agora-scheduler --example count_lines -- \
//!     --master 127.0.0.1:5050 --file /usr/share/dict/words --chunks 4
//! ```
//!
//! Each task runs `sed -n 'S,Ep' FILE | grep -c a` over its line range.
//! How does a count get back to the framework? A task's stdout lands in its
//! sandbox on the agent, which a framework cannot read yet, so each task
//! writes its count to `RESULTS/chunk-K` in a temporary directory this
//! program creates, and the program sums those files once every task is
//! TASK_FINISHED. That needs the agents to see this program's filesystem,
//! which holds in development (agents on this host); on a real cluster the
//! results would travel another way (a shared store, or framework messages).
//! The program checks the sum against a count of its own.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use agora_scheduler::proto::{OfferId, TaskState};
use agora_scheduler::{
    Event, FrameworkBuilder, SchedulerClient, SubscribeOptions, TaskBuilder, is_terminal,
    offer_cpus_mem,
};
use anyhow::{Context, bail, ensure};
use clap::Parser;

const CPUS: f64 = 0.1;
const MEM: f64 = 16.0;

#[derive(Parser, Debug)]
struct Args {
    /// Master address, HOST:PORT.
    #[arg(long, default_value = "127.0.0.1:5050")]
    master: String,
    /// The file to count in.
    #[arg(long)]
    file: PathBuf,
    /// How many tasks to split the file into.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    chunks: u32,
}

/// A chunk of the file: 1-based inclusive line range.
#[derive(Debug, Clone, Copy)]
struct Chunk {
    index: usize,
    first: usize,
    last: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let file = std::path::absolute(&args.file).context("resolving --file")?;
    let text = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
    let lines: Vec<&[u8]> = text.split_inclusive(|&b| b == b'\n').collect();
    let expected = lines.iter().filter(|l| l.contains(&b'a')).count();
    let chunks = split(lines.len(), args.chunks as usize);
    let results = tempfile::tempdir().context("creating the results directory")?;

    let framework = FrameworkBuilder::new("count-lines")
        // A batch job: if this program dies, its tasks are useless.
        .failover_timeout(Duration::from_secs(10))
        .build();
    let (client, mut events) =
        SchedulerClient::connect(&args.master, framework, SubscribeOptions::default())
            .await
            .context("subscribing")?;

    let mut pending: Vec<Chunk> = chunks.clone();
    let mut finished = 0;
    while finished < chunks.len() {
        let event = events
            .recv()
            .await
            .context("the master ended the subscription")?;
        match event {
            Event::Offers(offers) => {
                // Spread: at most ceil(pending / offers) chunks per offer.
                let per_offer = pending.len().div_ceil(offers.len().max(1));
                let mut unused: Vec<OfferId> = Vec::new();
                for offer in offers {
                    let id = offer.id.clone().context("offer without id")?;
                    let (cpus, mem) = offer_cpus_mem(&offer);
                    let fit = ((cpus / CPUS).floor().min((mem / MEM).floor()) as usize)
                        .min(per_offer)
                        .min(pending.len());
                    if fit == 0 {
                        unused.push(id);
                        continue;
                    }
                    let tasks = pending
                        .drain(..fit)
                        .map(|chunk| {
                            TaskBuilder::command(
                                format!("chunk-{}", chunk.index),
                                "count-lines",
                                command(&file, chunk, results.path()),
                            )
                            .cpus(CPUS)
                            .mem(MEM)
                            .build_for_offer(&offer)
                        })
                        .collect();
                    client
                        .launch(vec![id], tasks, None)
                        .await
                        .context("launching")?;
                }
                if !unused.is_empty() {
                    client.decline(unused, Some(Duration::from_secs(1))).await?;
                }
            }
            Event::Update(status) => {
                let state = TaskState::try_from(status.state.unwrap_or_default())
                    .unwrap_or(TaskState::TaskUnknown);
                let task = status.task_id.unwrap_or_default().value;
                if state == TaskState::TaskFinished {
                    finished += 1;
                    eprintln!("{task} finished ({finished}/{})", chunks.len());
                } else if is_terminal(state) {
                    client.teardown().await.ok();
                    bail!(
                        "{task} ended {}: {}",
                        state.as_str_name(),
                        status.message.unwrap_or_default()
                    );
                }
            }
            Event::Error(message) => bail!("the master ended the subscription: {message}"),
            _ => {}
        }
    }
    client.teardown().await.context("tearing down")?;

    let mut total = 0;
    for chunk in &chunks {
        let path = results.path().join(format!("chunk-{}", chunk.index));
        let count = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        total += count
            .trim()
            .parse::<usize>()
            .with_context(|| format!("parsing {}", path.display()))?;
    }
    println!("lines containing 'a': {total}");
    ensure!(
        total == expected,
        "the tasks counted {total}, a local count says {expected}"
    );
    Ok(ExitCode::SUCCESS)
}

/// `n` lines in `chunks` contiguous ranges of near-equal size (empty ranges
/// dropped, so a short file yields fewer chunks).
fn split(n: usize, chunks: usize) -> Vec<Chunk> {
    (0..chunks)
        .map(|k| (k * n / chunks, (k + 1) * n / chunks))
        .filter(|(start, end)| end > start)
        .enumerate()
        .map(|(index, (start, end))| Chunk {
            index,
            first: start + 1,
            last: end,
        })
        .collect()
}

/// The task's shell command. `grep -c` prints 0 and exits 1 when nothing
/// matches, hence `|| true`.
fn command(file: &Path, chunk: Chunk, results: &Path) -> String {
    let out = results.join(format!("chunk-{}", chunk.index));
    format!(
        "sed -n '{},{}p' {} | grep -c a > {} || true",
        chunk.first,
        chunk.last,
        quote(&file.to_string_lossy()),
        quote(&out.to_string_lossy()),
    )
}

/// Single-quotes `s` for `sh`.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_into_contiguous_ranges() {
        let ranges: Vec<_> = split(10, 3).iter().map(|c| (c.first, c.last)).collect();
        assert_eq!(ranges, vec![(1, 3), (4, 6), (7, 10)]);
        assert_eq!(split(2, 4).len(), 2);
        assert!(split(0, 4).is_empty());
    }

    #[test]
    fn quotes_paths_for_the_shell() {
        assert_eq!(quote("/tmp/it's"), r"'/tmp/it'\''s'");
        let chunk = Chunk {
            index: 2,
            first: 5,
            last: 9,
        };
        assert_eq!(
            command(Path::new("/d/f"), chunk, Path::new("/r")),
            "sed -n '5,9p' '/d/f' | grep -c a > '/r/chunk-2' || true"
        );
    }
}
