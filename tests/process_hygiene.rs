//! No zombies, no orphans, no leaked fds. Alone in its own binary: it
//! counts the process's fds and children.

mod support;

use std::time::Duration;

use ioasync::{io::open_fd_count, process::Command};
use support::{bounded, example, serial, zombie_children};
use tokio::io::AsyncBufReadExt;

#[test]
fn two_hundred_concurrent_run_child_calls_finish_with_no_zombie_and_no_leaked_fd() {
    serial(2, async {
        let lp = ioasync::Loop::current().unwrap();
        let before = open_fd_count().unwrap();
        let mut tasks = Vec::new();
        for _ in 0..200 {
            let lp = lp.clone();
            tasks.push(tokio::spawn(async move {
                lp.run_child(Command::new("/bin/true"), "").await
            }));
        }
        for t in tasks {
            let out = bounded("run_child", t).await.unwrap().unwrap();
            assert!(out.status.success());
        }
        assert_eq!(zombie_children(), 0);
        assert_eq!(open_fd_count().unwrap(), before);
    })
}

#[test]
fn a_sigkilled_parent_takes_its_child_with_it() {
    serial(2, async {
        // The parent: examples/timeout running a child that prints its pid.
        let mut parent = tokio::process::Command::new(example("timeout"))
            .args(["100", "sh", "-c", "echo $$; exec sleep 1000"])
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let out = parent.stdout.take().unwrap();
        let mut lines = tokio::io::BufReader::new(out).lines();
        let pid: i32 = bounded("child pid", lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .parse()
            .unwrap();
        // Watch the child through a pidfd: readable when it exits.
        let fd = pidfd(pid);
        parent.start_kill().unwrap(); // SIGKILL: no chance to clean up
        parent.wait().await.unwrap();
        let gone = tokio::task::spawn_blocking(move || {
            use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
            use std::os::fd::AsFd;
            let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
            poll(
                &mut fds,
                PollTimeout::try_from(Duration::from_secs(10)).unwrap(),
            )
            .unwrap()
        });
        assert_eq!(
            gone.await.unwrap(),
            1,
            "child {pid} outlived its SIGKILLed parent"
        );
    })
}

fn pidfd(pid: i32) -> std::os::fd::OwnedFd {
    use std::os::fd::FromRawFd;
    #[allow(unsafe_code)]
    // SAFETY: a plain syscall; the returned fd is new and owned here.
    unsafe {
        let fd = libc::syscall(libc::SYS_pidfd_open, pid, 0);
        assert!(
            fd >= 0,
            "pidfd_open({pid}): {}",
            std::io::Error::last_os_error()
        );
        std::os::fd::OwnedFd::from_raw_fd(fd as i32)
    }
}
