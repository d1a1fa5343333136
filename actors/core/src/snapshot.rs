//! Tree snapshots: plain data describing every notifier, printable as an
//! indented tree.
//!
//! ```text
//! / root running
//!   /server listener running restarts=0 queue=0
//!     /server/conn-17 stream running restarts=0 queue=0
//! ```

use std::fmt;

use crate::state::NodeState;

/// One notifier and its subtree, as plain data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSnapshot {
    /// Loop-unique id.
    pub id: u64,
    /// Kind (`root`, `stream`, `timer`, or the type's name).
    pub kind: &'static str,
    /// Name (last part of the path).
    pub name: String,
    /// Path in the tree.
    pub path: String,
    /// Supervision state.
    pub state: NodeState,
    /// Restarts since it was added.
    pub restarts: u32,
    /// Messages waiting in its mailbox, where known.
    pub queue: Option<usize>,
    /// Bytes held in its buffers, for notifiers that report them (streams).
    pub buffered: Option<u64>,
    /// Its children, in start order.
    pub children: Vec<NodeSnapshot>,
}

impl NodeSnapshot {
    /// Finds a notifier in this subtree by path.
    pub fn find(&self, path: &str) -> Option<&NodeSnapshot> {
        if self.path == path {
            return Some(self);
        }
        self.children.iter().find_map(|c| c.find(path))
    }

    /// This notifier and all below it, depth first.
    pub fn iter(&self) -> impl Iterator<Item = &NodeSnapshot> {
        let mut stack = vec![self];
        std::iter::from_fn(move || {
            let next = stack.pop()?;
            stack.extend(next.children.iter().rev());
            Some(next)
        })
    }

    fn write(&self, f: &mut fmt::Formatter<'_>, depth: usize) -> fmt::Result {
        write!(
            f,
            "{:indent$}{} {} {}",
            "",
            self.path,
            self.kind,
            self.state,
            indent = depth * 2
        )?;
        if depth > 0 {
            write!(f, " restarts={}", self.restarts)?;
        }
        if let Some(q) = self.queue {
            write!(f, " queue={q}")?;
        }
        if let Some(b) = self.buffered {
            write!(f, " buffered={b}")?;
        }
        writeln!(f)?;
        self.children.iter().try_for_each(|c| c.write(f, depth + 1))
    }
}

impl fmt::Display for NodeSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write(f, 0)
    }
}
