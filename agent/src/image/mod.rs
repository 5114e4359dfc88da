//! Container images built on this machine, for a node that reaches no registry: a tar
//! writer, the OCI image layout, and the busybox and pause images made from busybox-static.

pub mod busybox;
pub mod oci;
mod tar;

pub use busybox::{BUSYBOX_IMAGE, BUSYBOX_IMAGE_2, PAUSE_IMAGE};
