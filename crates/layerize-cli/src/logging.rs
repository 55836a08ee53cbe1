//! Logging set-up: human-readable text by default, JSON events (`phase`, `step`, `message` and the
//! event's fields) with `--log-format json`. Logs go to stderr; stdout carries results only. On a
//! terminal with the default level, a progress bar replaces the step-by-step info lines.

use std::io::IsTerminal;

use anyhow::Context;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter, Layer};

use crate::progress::ProgressLayer;

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// The level used when neither `--log-level` nor `LAYERIZE_LOG` says otherwise.
pub const DEFAULT_LEVEL: &str = "info";

pub fn init(format: LogFormat, level: &str) -> anyhow::Result<()> {
    let filter =
        || EnvFilter::try_new(level).with_context(|| format!("invalid --log-level {level:?}"));
    let terminal = std::io::stderr().is_terminal();
    match format {
        LogFormat::Json => tracing_subscriber::registry()
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_writer(std::io::stderr)
                    .with_filter(filter()?),
            )
            .init(),
        LogFormat::Text if terminal && level == DEFAULT_LEVEL => tracing_subscriber::registry()
            .with(ProgressLayer::new())
            .with(
                fmt::layer()
                    .with_target(false)
                    .with_writer(std::io::stderr)
                    .with_filter(EnvFilter::new("warn")),
            )
            .init(),
        LogFormat::Text => tracing_subscriber::registry()
            .with(
                fmt::layer()
                    .with_target(false)
                    .with_ansi(terminal)
                    .with_writer(std::io::stderr)
                    .with_filter(filter()?),
            )
            .init(),
    }
    Ok(())
}
