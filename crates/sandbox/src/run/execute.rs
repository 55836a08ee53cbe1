//! Spawning the step's process with its [`ChildPlan`], streaming its output line by line to
//! the caller, and waiting until it and every process it started are gone.

use std::io::{BufRead, BufReader, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use super::child::{ChildPlan, SetupStep};
use super::{ExitStatus, Output, Step, Stream};
use crate::{Mode, SandboxError};

/// Lines longer than this reach the caller in pieces.
const MAX_LINE: usize = 64 * 1024;

enum Event {
    Line(Stream, String),
    Closed,
    Exited(std::io::Result<std::process::ExitStatus>),
}

/// What the run itself found.
pub(crate) struct Finished {
    pub status: ExitStatus,
    pub proc_mounted: bool,
}

/// Runs `program` (absolute inside the root) with the step's argv and env under `plan`.
pub(crate) fn execute(
    root: &Path,
    program: &Path,
    step: &Step,
    mut plan: ChildPlan,
    on_output: &mut dyn FnMut(Output<'_>),
) -> Result<Finished, SandboxError> {
    let mode = plan.mode;
    let setup_error =
        |what: String, source: std::io::Error| SandboxError::Setup { mode, what, source };
    let (status_read, status_write) = status_pipe().map_err(|e| setup_error("pipe2".into(), e))?;
    plan.status_fd = status_write.as_raw_fd();
    let mut command = Command::new(program);
    command
        .arg0(&step.argv[0])
        .args(&step.argv[1..])
        .env_clear()
        .envs(step.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: `ChildPlan::enter` only makes raw syscalls on data prepared before the fork.
    unsafe { command.pre_exec(move || plan.enter()) };
    let spawned = command.spawn();
    drop(status_write);
    let reports = read_reports(status_read);
    let fatal = reports
        .iter()
        .find(|(step, _)| !matches!(step, SetupStep::ProcMounted | SetupStep::ProcRefused));
    let mut child = match (spawned, fatal) {
        (Ok(child), None) => child,
        (Ok(mut child), Some((step, errno))) => {
            // The grandchild's setup failed; the intermediate exits with it.
            let _ = child.wait();
            return Err(setup_error(
                step.describe().into(),
                std::io::Error::from_raw_os_error(*errno),
            ));
        }
        (Err(_), Some((step, errno))) => {
            return Err(setup_error(
                step.describe().into(),
                std::io::Error::from_raw_os_error(*errno),
            ))
        }
        (Err(e), None) => {
            return Err(setup_error(
                format!("executing {} in the rootfs", program.display()),
                e,
            ))
        }
    };
    let proc_mounted = reports.iter().any(|(s, _)| *s == SetupStep::ProcMounted);
    if let Some((step, errno)) = reports.iter().find(|(s, _)| *s == SetupStep::ProcRefused) {
        tracing::debug!(step = step.describe(), errno, "no /proc in the sandbox");
    }

    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let readers = [
        spawn_reader(stdout, Stream::Stdout, tx.clone()),
        spawn_reader(stderr, Stream::Stderr, tx.clone()),
    ];
    let waiter = std::thread::spawn(move || {
        let _ = tx.send(Event::Exited(child.wait()));
    });
    let mut open = readers.len();
    let mut exit = None;
    while open > 0 || exit.is_none() {
        match rx.recv() {
            Ok(Event::Line(stream, line)) => on_output(Output {
                stream,
                line: &line,
            }),
            Ok(Event::Closed) => open -= 1,
            Ok(Event::Exited(status)) => {
                let status = status.map_err(|e| setup_error("waiting for the step".into(), e))?;
                // Background processes of a chroot step outlive it and may hold its output
                // open: they go now, before the diff.
                if mode == Mode::Chroot {
                    kill_processes_in(root);
                }
                exit = Some(status);
            }
            Err(_) => break,
        }
    }
    for reader in readers {
        let _ = reader.join();
    }
    let _ = waiter.join();
    if mode == Mode::Chroot {
        kill_processes_in(root);
    }
    let status = exit.expect("the waiter reports the exit");
    let status = match (status.code(), status.signal()) {
        (Some(code), _) => ExitStatus::Code(code),
        (None, Some(signal)) => ExitStatus::Signal(signal),
        // Neither exited nor killed is impossible for a waited-for child.
        (None, None) => unreachable!("wait returned a stopped child"),
    };
    Ok(Finished {
        status,
        proc_mounted,
    })
}

fn status_pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two fds that we then own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both fds are fresh and owned by nothing else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Reads the child's setup reports until every copy of the write end is closed (the step
/// exec'd or its setup died).
fn read_reports(fd: OwnedFd) -> Vec<(SetupStep, i32)> {
    let mut bytes = Vec::new();
    let _ = std::fs::File::from(fd).read_to_end(&mut bytes);
    bytes
        .chunks_exact(8)
        .filter_map(|c| {
            let code = i32::from_ne_bytes(c[..4].try_into().expect("4 bytes"));
            let errno = i32::from_ne_bytes(c[4..].try_into().expect("4 bytes"));
            SetupStep::from_code(code).map(|s| (s, errno))
        })
        .collect()
}

fn spawn_reader(
    from: impl Read + Send + 'static,
    stream: Stream,
    tx: mpsc::Sender<Event>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::with_capacity(MAX_LINE, from);
        let mut line = Vec::new();
        loop {
            let chunk = match reader.fill_buf() {
                Ok([]) | Err(_) => break,
                Ok(chunk) => chunk,
            };
            let room = MAX_LINE - line.len();
            let (used, complete) = match chunk.iter().take(room).position(|b| *b == b'\n') {
                Some(i) => (i + 1, true),
                None => (
                    chunk.len().min(room),
                    line.len() + chunk.len().min(room) == MAX_LINE,
                ),
            };
            line.extend_from_slice(&chunk[..used]);
            reader.consume(used);
            if complete {
                send_line(&tx, stream, &mut line);
            }
        }
        if !line.is_empty() {
            send_line(&tx, stream, &mut line);
        }
        let _ = tx.send(Event::Closed);
    })
}

fn send_line(tx: &mpsc::Sender<Event>, stream: Stream, line: &mut Vec<u8>) {
    if line.last() == Some(&b'\n') {
        line.pop();
    }
    let text = String::from_utf8_lossy(line).into_owned();
    line.clear();
    let _ = tx.send(Event::Line(stream, text));
}

/// SIGKILLs every process whose root is `root` until none is left (chroot mode: there is no
/// pid namespace to end them).
fn kill_processes_in(root: &Path) {
    // SAFETY: getpid cannot fail.
    let own = unsafe { libc::getpid() };
    loop {
        let mut found = 0;
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return;
        };
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<i32>().ok())
            else {
                continue;
            };
            if pid == own {
                continue;
            }
            let Ok(link) = std::fs::read_link(entry.path().join("root")) else {
                continue;
            };
            if link.as_os_str().as_bytes() == root.as_os_str().as_bytes() {
                // SAFETY: sending a signal to a pid.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                found += 1;
            }
        }
        if found == 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
