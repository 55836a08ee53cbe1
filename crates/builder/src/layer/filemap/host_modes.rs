//! Which permission bits a host file or directory gets in a layer: the host's own, or ones that
//! depend only on the kind of entry and the owner's execute bit.
//!
//! Why normalise: a checkout's permission bits follow the umask of whoever made it (git writes
//! 0644 or 0664, 0755 or 0775, ...), so two CI runners with different umasks would otherwise make
//! different layers from the same commit. Git itself records only "executable or not", and that
//! is what survives normalisation.

use super::entry::{Node, DIR_MODE, FILE_MODE, PERMISSION_BITS};

/// How host permission bits are taken (for host files and host directory trees; a `mode` given
/// explicitly always wins).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HostModes {
    /// The host's permission bits, set-uid, set-gid and sticky included (the `--file` and
    /// `--dir` flags).
    #[default]
    Keep,
    /// Independent of the umask: regular files 0755 when the owner may execute them, else 0644;
    /// directories 0755; symlinks as they are; devices and FIFOs their `rwx` bits. Set-uid,
    /// set-gid and sticky bits are dropped.
    Normalise,
}

/// The owner's execute bit.
const OWNER_EXECUTE: u32 = 0o100;
/// Read, write and execute for owner, group and others: no set-uid, set-gid or sticky bit.
const RWX_BITS: u32 = 0o777;
/// A normalised regular file that its owner may execute.
const EXECUTABLE_FILE_MODE: u32 = 0o755;

impl HostModes {
    /// The permission bits of a host entry of kind `node` whose host mode is `host_mode`.
    pub(super) fn mode(self, node: &Node, host_mode: u32) -> u32 {
        let host_mode = host_mode & PERMISSION_BITS;
        match (self, node) {
            (HostModes::Keep, _) | (HostModes::Normalise, Node::Symlink(_)) => host_mode,
            (HostModes::Normalise, Node::Dir) => DIR_MODE,
            (HostModes::Normalise, Node::File(_) | Node::Hardlink(_)) => Self::file_mode(host_mode),
            (HostModes::Normalise, Node::Special { .. }) => host_mode & RWX_BITS,
        }
    }

    /// The permission bits of a host regular file whose host mode is `host_mode`.
    pub(super) fn regular_file(self, host_mode: u32) -> u32 {
        match self {
            HostModes::Keep => host_mode & PERMISSION_BITS,
            HostModes::Normalise => Self::file_mode(host_mode),
        }
    }

    fn file_mode(host_mode: u32) -> u32 {
        if host_mode & OWNER_EXECUTE != 0 {
            EXECUTABLE_FILE_MODE
        } else {
            FILE_MODE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::entry::{Content, SpecialKind};
    use super::*;

    #[test]
    fn normalised_modes_depend_on_the_kind_and_the_owner_execute_bit_only() {
        let file = Node::File(Content::Inline(Vec::new().into()));
        let fifo = Node::Special {
            kind: SpecialKind::Fifo,
            major: 0,
            minor: 0,
        };
        let symlink = Node::Symlink("target".into());
        for (node, host, normalised) in [
            (&file, 0o644, 0o644),
            (&file, 0o664, 0o644),
            (&file, 0o600, 0o644),
            (&file, 0o755, 0o755),
            (&file, 0o775, 0o755),
            (&file, 0o700, 0o755),
            (&file, 0o4755, 0o755),
            (&file, 0o2711, 0o755),
            (&file, 0o011, 0o644),
            (&Node::Dir, 0o775, 0o755),
            (&Node::Dir, 0o700, 0o755),
            (&Node::Dir, 0o1777, 0o755),
            (&symlink, 0o777, 0o777),
            (&fifo, 0o4664, 0o664),
        ] {
            assert_eq!(
                HostModes::Normalise.mode(node, host),
                normalised,
                "{node:?} {host:o}"
            );
            assert_eq!(HostModes::Keep.mode(node, host), host, "{node:?} {host:o}");
        }
        assert_eq!(HostModes::Normalise.regular_file(0o100775), 0o755);
        assert_eq!(HostModes::Normalise.regular_file(0o100664), 0o644);
        assert_eq!(HostModes::Keep.regular_file(0o104775), 0o4775);
    }
}
