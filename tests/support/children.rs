//! Child processes that die with the test process, even when it is killed with SIGKILL and no
//! `Drop` runs: every command gets `PR_SET_PDEATHSIG`, and long-lived children (registries) are
//! forked by a thread that lives as long as the process.
//!
//! The kernel sends the parent-death signal when the *thread* that forked the child ends, not
//! the process. A test's thread ends with the test, so a child it forks and waits for is covered,
//! but a server it starts would die as soon as the thread that started it does (a helper thread,
//! or a test that hands it to another). [`spawn`] forks from one thread that never ends instead.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::mpsc;
use std::sync::OnceLock;

/// Makes the child of `command` get SIGKILL when the thread that spawns it ends, which for
/// [`spawn`] is when the test process ends, however it ends.
pub fn die_with_test_process(command: &mut Command) -> &mut Command {
    let test_process = std::process::id();
    // SAFETY: the closure runs between fork and exec and only makes async-signal-safe system
    // calls, without allocating.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The test process may have died between fork and prctl; then no signal would come.
            if libc::getppid() as u32 != test_process {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        })
    }
}

type SpawnRequest = (Command, mpsc::SyncSender<io::Result<Child>>);

/// Spawns `command` (see [`die_with_test_process`]) from the process-long spawner thread, so
/// the child lives until it is killed or the test process ends, whichever thread holds it.
pub fn spawn(mut command: Command) -> io::Result<Child> {
    static SPAWNER: OnceLock<mpsc::Sender<SpawnRequest>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (requests, incoming) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("child-spawner".into())
            .spawn(move || {
                for (mut command, reply) in incoming {
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("start the child-spawner thread");
        requests
    });
    die_with_test_process(&mut command);
    let (reply, spawned) = mpsc::sync_channel(1);
    spawner
        .send((command, reply))
        .expect("the child-spawner thread runs as long as the process");
    spawned
        .recv()
        .expect("the child-spawner thread answers every request")
}
