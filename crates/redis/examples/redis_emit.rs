//! `redis_emit`: publishes one event to a classic Redis cluster with the Rust [`Emitter`], then
//! exits; for the mixed-cluster tests (`tests/cluster`), and an example of the emitter.
//!
//! ```text
//! redis_emit --redis-url redis://127.0.0.1:6379 [--nsp /] [--to ROOM]... [--except ROOM]... \
//!     --event NAME --args '[1, "two"]'
//! ```

use anyhow::Context;
use clap::Parser;
use serde_json::Value;
use switchyard::Args;
use switchyard_redis::Emitter;

#[derive(Parser)]
struct Options {
    /// The Redis server.
    #[arg(long)]
    redis_url: String,
    /// The namespace.
    #[arg(long, default_value = "/")]
    nsp: String,
    /// Only clients in this room (repeatable).
    #[arg(long)]
    to: Vec<String>,
    /// Not clients in this room (repeatable).
    #[arg(long)]
    except: Vec<String>,
    /// The event name.
    #[arg(long)]
    event: String,
    /// The arguments, a JSON array.
    #[arg(long, default_value = "[]")]
    args: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = Options::parse();
    let values: Vec<Value> = serde_json::from_str(&options.args).context("--args: a JSON array")?;
    let emitter = Emitter::connect(&options.redis_url)
        .await
        .context("connecting to Redis")?
        .of(&options.nsp)
        .to(options.to)
        .except(options.except);
    emitter
        .emit(
            &options.event,
            Args {
                values,
                attachments: Vec::new(),
            },
        )
        .await?;
    Ok(())
}
