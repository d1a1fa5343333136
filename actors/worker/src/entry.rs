//! Entry points: named functions a worker process runs. The program
//! registers them and calls [`run_if_worker`] at the top of `main`; when
//! the binary was re-executed as a worker, that call runs the entry and
//! exits, and otherwise returns at once. No worker code runs by accident in
//! the parent, and nothing forks a process that runs tokio threads.

use std::{
    ffi::OsString,
    io::{Read, Write},
    os::{fd::FromRawFd, unix::net::UnixStream},
    panic::AssertUnwindSafe,
    sync::Arc,
};

use serde::{Serialize, de::DeserializeOwned};

use crate::frame::{self, CALL, REPLY_ERR, REPLY_OK};

/// Environment variable naming the entry a worker runs.
pub const ENTRY_ENV: &str = "IOASYNC_WORKER_ENTRY";
/// The fd of the worker's end of its socket to the parent.
pub const WORKER_FD: i32 = 3;

type Erased = Arc<dyn Fn(&[u8]) -> Result<Vec<u8>, String> + Send + Sync>;

/// A named function a worker can run.
#[derive(Clone)]
pub struct Entry {
    name: &'static str,
    run: Erased,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry").field("name", &self.name).finish()
    }
}

impl Entry {
    /// An entry running `f` on each call: arguments and results travel as
    /// MessagePack. A panic in `f` fails that call with the panic message;
    /// the worker lives on.
    pub fn function<A, R>(name: &'static str, f: fn(A) -> R) -> Entry
    where
        A: DeserializeOwned + 'static,
        R: Serialize + 'static,
    {
        let run: Erased = Arc::new(move |bytes: &[u8]| {
            let args: A = frame::decode(bytes).map_err(|e| e.to_string())?;
            let out = std::panic::catch_unwind(AssertUnwindSafe(|| f(args))).map_err(|p| {
                p.downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "panic".to_owned())
            })?;
            frame::encode(&out)
                .map(|b| b.to_vec())
                .map_err(|e| e.to_string())
        });
        Entry { name, run }
    }

    /// The entry's name.
    pub fn name(&self) -> &'static str {
        self.name
    }
}

/// If this process was started as a worker, runs its entry and exits;
/// otherwise returns at once. Call it first thing in `main` (in tests: in
/// a `#[test]` the worker command line names, see
/// [`FunctionSpec::exec_args`](crate::FunctionSpec::exec_args)).
pub fn run_if_worker(entries: impl IntoIterator<Item = Entry>) {
    let Some(name) = std::env::var_os(ENTRY_ENV) else {
        return;
    };
    let name: OsString = name;
    let entry = entries.into_iter().find(|e| name == *e.name);
    let code = match entry {
        Some(e) => serve(e),
        None => {
            eprintln!("ioasync worker: no entry point named {name:?}");
            70
        }
    };
    std::process::exit(code);
}

/// The worker loop: read a call, run it, write the reply, until the
/// parent closes the socket.
fn serve(entry: Entry) -> i32 {
    // A panicking call is reported to the caller; one line here is enough.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("ioasync worker {}: {info}", std::process::id());
    }));
    #[allow(unsafe_code)]
    // SAFETY: the parent set up fd 3 as our end of the socketpair and
    // nothing else in this process owns it.
    let mut sock = unsafe { UnixStream::from_raw_fd(WORKER_FD) };
    let mut len = [0u8; 4];
    let mut buf = Vec::new();
    loop {
        if sock.read_exact(&mut len).is_err() {
            return 0; // the parent closed: done
        }
        let n = u32::from_be_bytes(len) as usize;
        if n > frame::DEFAULT_MAX_FRAME {
            eprintln!("ioasync worker: frame of {n} bytes refused");
            return 65;
        }
        buf.resize(n, 0);
        if sock.read_exact(&mut buf).is_err() {
            return 0;
        }
        let Ok((kind, id, payload)) = frame::parse_worker_frame(&buf) else {
            return 65;
        };
        if kind != CALL {
            return 65;
        }
        let reply = match (entry.run)(payload) {
            Ok(out) => frame::worker_frame(REPLY_OK, id, &out),
            Err(msg) => frame::worker_frame(REPLY_ERR, id, msg.as_bytes()),
        };
        let mut out = Vec::with_capacity(4 + reply.len());
        out.extend_from_slice(&(reply.len() as u32).to_be_bytes());
        out.extend_from_slice(&reply);
        if sock.write_all(&out).is_err() {
            return 0;
        }
    }
}
