//! A `script:` layer: `run` (the commands), and optionally `shell`, `needs`, `env`, `workdir`,
//! `user`, `network` and `pin`, read into the builder's [`ScriptStep`]. `needs` may only name
//! layers written before the step (the step runs on top of them).

use std::collections::HashMap;

use layerize_builder::layer::script::ScriptStep;

use crate::dest::{destination, Use};
use crate::error::{Fault, Problem};
use crate::position::Position;
use crate::read::{boolean, key, list, string, string_map, strings, Fields};
use crate::yaml::{Node, Value};

const SCRIPT_KEYS: &[&str] = &[
    "run", "shell", "needs", "env", "workdir", "user", "network", "pin",
];

/// Reads a `script` mapping; `earlier` holds every layer and package name written before it.
pub(crate) fn read(node: &Node, earlier: &HashMap<String, Position>) -> Result<ScriptStep, Fault> {
    let fields = Fields::of(node, &key("script"), "a script", SCRIPT_KEYS)?;
    let run_node = fields.require("run")?;
    let run = match &run_node.value {
        Value::Scalar { .. } => vec![string(run_node, &key("run"))?],
        _ => strings(run_node, &key("run"))?,
    };
    if run.is_empty() || run.iter().all(|command| command.trim().is_empty()) {
        return Err(Fault::new(
            run_node.at,
            Problem::EmptyList {
                key: "run",
                item: "command",
            },
        ));
    }
    let mut step = ScriptStep::new(run);
    if let Some(shell) = fields.get("shell") {
        step.shell = match &shell.value {
            Value::Scalar { .. } => string(shell, &key("shell"))?
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
            _ => strings(shell, &key("shell"))?,
        };
        if !step
            .shell
            .first()
            .is_some_and(|program| program.starts_with('/'))
        {
            return Err(Fault::new(
                shell.at,
                Problem::InvalidValue {
                    key: key("shell"),
                    message: "the shell must start with an absolute path in the image, e.g. [/bin/bash, -e, -c]".to_owned(),
                },
            ));
        }
    }
    if let Some(needs) = fields.get("needs") {
        for item in list(needs, &key("needs"), "a list of earlier layer names")? {
            let name = string(item, "an item of \"needs\"")?;
            if !earlier.contains_key(&name) {
                return Err(Fault::new(item.at, Problem::UnknownNeed(name)));
            }
            if !step.needs.contains(&name) {
                step.needs.push(name);
            }
        }
    }
    if let Some(env) = fields.get("env") {
        step.env = string_map(env, &key("env"), "env")?
            .into_iter()
            .map(|(name, value, _)| (name, value))
            .collect();
        if let Some((name, _)) = step
            .env
            .iter()
            .find(|(name, _)| name.is_empty() || name.contains('=') || name.contains('\0'))
        {
            return Err(Fault::new(
                env.at,
                Problem::InvalidValue {
                    key: key("env"),
                    message: format!("{name:?} is not a variable name"),
                },
            ));
        }
    }
    if let Some(workdir) = fields.get("workdir") {
        step.workdir = Some(destination(workdir, &key("workdir"), Use::RootToo)?);
    }
    if let Some(user) = fields.get("user") {
        step.user = Some(string(user, &key("user"))?);
    }
    if let Some(network) = fields.get("network") {
        step.network = boolean(network, "network")?;
    }
    if let Some(pin) = fields.get("pin") {
        if !step.network {
            return Err(Fault::new(
                pin.at,
                Problem::InvalidValue {
                    key: key("pin"),
                    message: "pin replaces the date in the key of a step with network: true; without the network the key has no date".to_owned(),
                },
            ));
        }
        step.pin = Some(string(pin, &key("pin"))?);
    }
    Ok(step)
}
