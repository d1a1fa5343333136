//! Tree snapshots: plain data describing every notifier, printable as an
//! indented tree, or drawn as Graphviz DOT ([`NodeSnapshot::to_dot`]).
//!
//! ```text
//! / root running
//!   /server listener running restarts=0 queue=0
//!     /server/conn-17 stream running restarts=0 queue=0
//!   /pool function running restarts=0 queue=0
//!     /pool/worker-4711 worker running restarts=0 queue=0 pid=4711
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
    /// What the notifier says of itself (`pid=4711`), where it does (see
    /// [`Ctx::set_detail`](crate::Ctx::set_detail)).
    pub detail: Option<String>,
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

    /// The subtree as a Graphviz DOT digraph: one box per notifier
    /// (name, kind, state, restarts, queue depth, buffered bytes, detail
    /// such as a pid), an edge from each parent to its children. Failed
    /// and stopped notifiers are drawn red, restarting ones orange,
    /// starting and stopping ones grey; a notifier that has restarted has a
    /// bold border. `dot -Tsvg` renders it.
    ///
    /// ```
    /// # fn main() -> ioasync::Result<()> {
    /// let lp = ioasync::Loop::new()?;
    /// let dot = lp.tree().to_dot();
    /// assert!(dot.starts_with("digraph ioasync {"));
    /// assert!(dot.contains("\"/\""), "the root's node: {dot}");
    /// # Ok(()) }
    /// ```
    pub fn to_dot(&self) -> String {
        let mut out = String::from(
            "digraph ioasync {\n  rankdir=LR;\n  node [shape=box, style=\"rounded,filled\", fillcolor=white, fontname=\"monospace\"];\n",
        );
        for n in self.iter() {
            let mut label = format!("{}\n{} {}", n.name_or_root(), n.kind, n.state);
            if n.restarts > 0 {
                label.push_str(&format!("\nrestarts={}", n.restarts));
            }
            if let Some(q) = n.queue.filter(|q| *q > 0) {
                label.push_str(&format!("\nqueue={q}"));
            }
            if let Some(b) = n.buffered.filter(|b| *b > 0) {
                label.push_str(&format!("\nbuffered={b}"));
            }
            if let Some(d) = &n.detail {
                label.push_str(&format!("\n{d}"));
            }
            let color = match n.state {
                NodeState::Running => "white",
                NodeState::Restarting => "orange",
                NodeState::Failed | NodeState::Stopped => "tomato",
                _ => "lightgrey",
            };
            let pen = if n.restarts > 0 { ", penwidth=3" } else { "" };
            out.push_str(&format!(
                "  {} [label={}, fillcolor={color}{pen}];\n",
                dot_string(&n.path),
                dot_string(&label)
            ));
            for c in &n.children {
                out.push_str(&format!(
                    "  {} -> {};\n",
                    dot_string(&n.path),
                    dot_string(&c.path)
                ));
            }
        }
        out.push_str("}\n");
        out
    }

    fn name_or_root(&self) -> &str {
        if self.name.is_empty() {
            "/"
        } else {
            &self.name
        }
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
        if let Some(d) = &self.detail {
            write!(f, " {d}")?;
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

/// A DOT string literal: quoted, with `"` and `\` escaped and newlines as
/// DOT's `\n`.
fn dot_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
