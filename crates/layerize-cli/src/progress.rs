//! A progress bar on the terminal, fed by the build's `step` events: how many layers of the
//! result are present in the target so far, with script steps' output printed above it. Shown
//! only when stderr is a terminal and logs are text.

use indicatif::{ProgressBar, ProgressStyle};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::Layer;

/// Counts the layers of the result from the build's events and shows them as a bar.
pub struct ProgressLayer {
    bar: ProgressBar,
}

impl ProgressLayer {
    pub fn new() -> Self {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} layers {elapsed}")
                .expect("a valid progress template")
                .progress_chars("=> "),
        );
        bar.set_message("building");
        ProgressLayer { bar }
    }
}

/// The fields of a build event that move the bar.
#[derive(Default)]
struct StepFields {
    step: Option<u64>,
    layers: Option<u64>,
    /// A script step's name and one line of its output.
    script_step: Option<String>,
    line: Option<String>,
}

impl Visit for StepFields {
    fn record_u64(&mut self, field: &Field, value: u64) {
        match field.name() {
            "step" => self.step = Some(value),
            "layers" => self.layers = Some(value),
            _ => {}
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if let Ok(value) = u64::try_from(value) {
            self.record_u64(field, value);
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "step" => self.script_step = Some(value.to_owned()),
            "line" => self.line = Some(value.to_owned()),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        // `step = %name` arrives as a Display value.
        if field.name() == "step" {
            self.script_step = Some(format!("{value:?}"));
        }
    }
}

impl<S: Subscriber> Layer<S> for ProgressLayer {
    fn on_event(&self, event: &Event<'_>, _context: Context<'_, S>) {
        let mut fields = StepFields::default();
        event.record(&mut fields);
        if let (Some(step), Some(line)) = (&fields.script_step, &fields.line) {
            self.bar.println(format!("[{step}] {line}"));
            return;
        }
        match (fields.step, fields.layers) {
            // Step 0 announces the layers to build, step 6 the base's layers.
            (Some(0 | 6), Some(layers)) => self.bar.inc_length(layers),
            (Some(2), _) => self.bar.inc(1),
            (Some(5), _) => self.bar.set_message("writing manifest"),
            (Some(8), _) => self.bar.finish_and_clear(),
            _ => {}
        }
    }
}
