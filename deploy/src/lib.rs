//! Site configuration, slots, address leases, contextualization disks and Xen guest configuration.
//!
//! The crate is the site side of `wafer deploy`:
//!
//! * [`site`] — the site configuration (TOML): host resources set aside, Xen, slots, networks
//!   with address pools, and the storage/state/trust-store directories;
//! * [`fit`] — matching a wafer's [`fit::Requirements`] against the free slots a VO may use,
//!   with precise reasons for every slot that does not fit and host resource accounting;
//! * [`lease`] — crash-safe address leases in the state directory (flock, atomic records);
//! * [`cidata`] — the cloud-init NoCloud `CIDATA` FAT image and `wafer-context.env`;
//! * [`xl`] — the xl.cfg writer and parser, and the disk/vif spec parsers;
//! * [`xl`] also parses `xl list` output, which recovery trusts to say which guests exist;
//! * [`qemu`] and [`qmp`] — QEMU/KVM as the hypervisor (`[hypervisor] kind = "qemu"`): the
//!   launch description and command line, the accelerator probe, and QEMU's QMP socket;
//! * [`deployment`] — deployment records, launch through a [`deployment::Hypervisor`], `ps`, `stop`,
//!   and recovery that asks the hypervisor before it frees anything a guest may still use.
//!
//! Everything this crate writes goes below the site's storage or state directory; every name
//! that becomes part of a path is checked by [`names::check_name`].

mod child;
pub mod cidata;
pub mod deployment;
pub mod fit;
pub mod fsutil;
pub mod lease;
pub mod names;
pub mod net;
pub mod qemu;
pub mod qmp;
pub mod site;
mod wafer;
pub mod xl;

pub use wafer::{requirements, MAX_BOOT_FILE};
