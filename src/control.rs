//! A live view of a running program's tree, opt-in: [`serve_tree`] puts a
//! Unix socket beside the program; each connection to it gets the tree as
//! it is now — text, or Graphviz DOT when the client first sends `dot\n`
//! — and is closed. `examples/top.rs` redraws it every second in a
//! terminal, like OTP's observer.
//!
//! ```no_run
//! # fn main() -> ioasync::Result<()> {
//! let lp = ioasync::Loop::new()?;
//! let l = lp.clone();
//! lp.block_on(async move {
//!     ioasync::control::serve_tree(&l, "/tmp/my-service.tree").await?;
//!     // ... the service ...
//! #   Ok::<(), ioasync::Error>(())
//! })?;
//! # Ok(()) }
//! ```
//!
//! ```sh
//! cargo run --example top -- /tmp/my-service.tree
//! ```

use std::path::Path;

use ioasync_io::{Address, Listen, Listener, Session};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{Error, Loop, Result, notifier::NotifierRef};

/// Serves the tree of `lp` on a Unix socket at `path` (a listener named
/// `control` in the tree, each client a short-lived `session`): a client
/// that sends nothing, or anything but `dot`, within 100 ms gets
/// [`NodeSnapshot`](crate::supervision::NodeSnapshot)'s text form; one that sends
/// `dot\n` gets [`NodeSnapshot::to_dot`](crate::supervision::NodeSnapshot::to_dot).
/// Only this machine's users with access to `path` can read it.
///
/// ```
/// use ioasync::{Loop, control::serve_tree};
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> ioasync::Result<()> {
/// let lp = Loop::current()?;
/// let path = std::env::temp_dir().join(format!("ioasync-tree-doc-{}.sock", std::process::id()));
/// let control = serve_tree(&lp, &path).await?;
/// assert_eq!(control.path(), "/control");
/// let mut client = tokio::net::UnixStream::connect(&path).await.unwrap();
/// client.write_all(b"dot\n").await.unwrap();
/// let mut dot = String::new();
/// client.read_to_string(&mut dot).await.unwrap();
/// assert!(dot.starts_with("digraph"), "{dot}");
/// assert!(dot.contains("control"));
/// control.stop().await; // removes the socket file
/// # Ok(()) }
/// ```
///
/// # Cancel safety
///
/// Dropped before it completes, the listener may still have been added
/// under the root (find it at `/control`).
pub async fn serve_tree(lp: &Loop, path: impl AsRef<Path>) -> Result<NotifierRef<Listener>> {
    let at = Address::Unix(path.as_ref().to_path_buf());
    let view = lp.clone();
    lp.listen("control", Listen::new(at), move |conn, _peer| {
        let view = view.clone();
        Session::spec("", conn, move |mut conn, _stop| async move {
            let mut ask = [0u8; 4];
            let asked =
                tokio::time::timeout(std::time::Duration::from_millis(100), conn.read(&mut ask))
                    .await;
            let tree = view.tree();
            let text = match asked {
                Ok(Ok(n)) if ask[..n].starts_with(b"dot") => tree.to_dot(),
                _ => tree.to_string(),
            };
            conn.write_all(text.as_bytes())
                .await
                .map_err(|e| Error::io("write", e))?;
            conn.shutdown()
                .await
                .map_err(|e| Error::io("shutdown", e))?;
            Ok(())
        })
    })
    .await
}
