//! Matching a wafer's requirements against the site's free slots, with host accounting.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::site::{GuestType, Site, SlotConfig, XenVersion};

/// What a wafer needs (from its manifest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requirements {
    /// Memory, MiB.
    pub memory_mib: u64,
    /// Virtual CPUs.
    pub vcpus: u32,
    /// Disk, MiB.
    pub disk_mib: u64,
    /// Architecture, e.g. "x86_64".
    pub arch: String,
    /// Guest types the wafer boots as, most preferred first.
    pub guest_types: Vec<GuestType>,
    /// Lowest Xen version it runs on.
    pub min_xen: Option<XenVersion>,
}

/// A slot that is taken: by which deployment, with what resources.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    /// Slot name.
    pub slot: String,
    /// Deployment holding it.
    pub deployment: String,
    /// Memory, MiB (the slot's, at the time it was taken).
    pub memory_mib: u64,
    /// vcpus.
    pub vcpus: u32,
    /// Disk, MiB.
    pub disk_mib: u64,
}

impl Allocation {
    /// The allocation a deployment of `slot` takes.
    pub fn for_slot(slot: &SlotConfig, deployment: &str) -> Allocation {
        Allocation {
            slot: slot.name.clone(),
            deployment: deployment.to_string(),
            memory_mib: slot.memory_mib,
            vcpus: slot.vcpus,
            disk_mib: slot.disk_mib,
        }
    }
}

/// Resource totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Memory, MiB.
    pub memory_mib: u64,
    /// vcpus.
    pub vcpus: u64,
    /// Disk, MiB.
    pub disk_mib: u64,
}

/// Sum of the resources held by `allocations`.
pub fn used(allocations: &[Allocation]) -> Totals {
    let mut t = Totals::default();
    for a in allocations {
        t.memory_mib = t.memory_mib.saturating_add(a.memory_mib);
        t.vcpus = t.vcpus.saturating_add(u64::from(a.vcpus));
        t.disk_mib = t.disk_mib.saturating_add(a.disk_mib);
    }
    t
}

/// Why one slot cannot take the wafer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The VO may not use the slot.
    VoNotAllowed {
        /// The VO.
        vo: String,
    },
    /// Another deployment holds the slot.
    InUse {
        /// The deployment.
        by: String,
    },
    /// Not enough memory.
    Memory {
        /// Slot's.
        have: u64,
        /// Wafer's.
        need: u64,
    },
    /// Not enough vcpus.
    Vcpus {
        /// Slot's.
        have: u32,
        /// Wafer's.
        need: u32,
    },
    /// Not enough disk.
    Disk {
        /// Slot's.
        have: u64,
        /// Wafer's.
        need: u64,
    },
    /// Wrong architecture.
    Arch {
        /// Slot's.
        have: String,
        /// Wafer's.
        need: String,
    },
    /// None of the wafer's guest types runs on this host.
    GuestType {
        /// Site's.
        have: Vec<GuestType>,
        /// Wafer's.
        need: Vec<GuestType>,
    },
    /// Xen too old.
    XenVersion {
        /// Site's.
        have: XenVersion,
        /// Wafer's minimum.
        need: XenVersion,
    },
    /// Taking the slot would exceed what the host set aside.
    HostOvercommit {
        /// "memory", "vcpus" or "disk".
        resource: &'static str,
        /// In use by running slots.
        in_use: u64,
        /// This slot's amount.
        slot: u64,
        /// The host's total set aside.
        limit: u64,
        /// Unit ("MiB" or "").
        unit: &'static str,
    },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |v: &[GuestType]| v.iter().map(|g| g.as_str()).collect::<Vec<_>>().join("/");
        match self {
            Reason::VoNotAllowed { vo } => write!(f, "VO {vo} not allowed"),
            Reason::InUse { by } => write!(f, "in use by {by}"),
            Reason::Memory { have, need } => write!(f, "memory {have} MiB < required {need} MiB"),
            Reason::Vcpus { have, need } => write!(f, "vcpus {have} < required {need}"),
            Reason::Disk { have, need } => write!(f, "disk {have} MiB < required {need} MiB"),
            Reason::Arch { have, need } => write!(f, "arch {have} != required {need}"),
            Reason::GuestType { have, need } => write!(
                f,
                "guest types {} on this host, wafer needs {}",
                list(have),
                list(need)
            ),
            Reason::XenVersion { have, need } => write!(f, "Xen {have} < required {need}"),
            Reason::HostOvercommit {
                resource,
                in_use,
                slot,
                limit,
                unit,
            } => {
                let u = if unit.is_empty() {
                    String::new()
                } else {
                    format!(" {unit}")
                };
                write!(f, "host {resource}: {in_use}{u} in use + {slot}{u} for this slot > {limit}{u} set aside")
            }
        }
    }
}

/// One slot and every reason it does not fit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotRejection {
    /// Slot name.
    pub slot: String,
    /// Reasons, never empty.
    pub reasons: Vec<Reason>,
}

impl fmt::Display for SlotRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r: Vec<String> = self.reasons.iter().map(|r| r.to_string()).collect();
        write!(f, "slot {}: {}", self.slot, r.join("; "))
    }
}

/// No slot fits.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum FitError {
    /// The site has no slots.
    #[error("the site declares no slots")]
    NoSlots,
    /// `--slot NAME` names no slot; the site's slots are listed.
    #[error("no slot is called {name:?}; the site's slots: {}", .known.join(", "))]
    UnknownSlot {
        /// The name asked for.
        name: String,
        /// The slots the site declares.
        known: Vec<String>,
    },
    /// Every slot was rejected; each with its reasons.
    #[error("no slot fits wafer of VO {vo}:\n{}", .rejections.iter().map(|r| format!("  {r}")).collect::<Vec<_>>().join("\n"))]
    NoFit {
        /// The VO.
        vo: String,
        /// Per-slot reasons.
        rejections: Vec<SlotRejection>,
    },
}

/// The slot chosen and the guest type to boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// Slot name.
    pub slot: String,
    /// Guest type (the wafer's most preferred one the host runs).
    pub guest_type: GuestType,
}

/// Every reason `slot` cannot take the wafer of `vo`, given the running `allocations`.
pub fn check_slot(
    site: &Site,
    slot: &SlotConfig,
    req: &Requirements,
    vo: &str,
    allocations: &[Allocation],
) -> Vec<Reason> {
    let mut reasons = Vec::new();
    if !slot.vos.iter().any(|v| v == "*" || v == vo) {
        reasons.push(Reason::VoNotAllowed { vo: vo.to_string() });
    }
    if let Some(a) = allocations.iter().find(|a| a.slot == slot.name) {
        reasons.push(Reason::InUse {
            by: a.deployment.clone(),
        });
    }
    if slot.memory_mib < req.memory_mib {
        reasons.push(Reason::Memory {
            have: slot.memory_mib,
            need: req.memory_mib,
        });
    }
    if slot.vcpus < req.vcpus {
        reasons.push(Reason::Vcpus {
            have: slot.vcpus,
            need: req.vcpus,
        });
    }
    if slot.disk_mib < req.disk_mib {
        reasons.push(Reason::Disk {
            have: slot.disk_mib,
            need: req.disk_mib,
        });
    }
    if slot.arch != req.arch {
        reasons.push(Reason::Arch {
            have: slot.arch.clone(),
            need: req.arch.clone(),
        });
    }
    // Xen guest types and versions mean nothing to a QEMU site: it boots the same kernel as a
    // full virtual machine (a kernel that can only run under Xen is refused by deploy)
    if let Some(xen) = site.xen() {
        if !req.guest_types.iter().any(|g| xen.guest_types.contains(g)) {
            reasons.push(Reason::GuestType {
                have: xen.guest_types.iter().copied().collect(),
                need: req.guest_types.clone(),
            });
        }
        if let Some(min) = req.min_xen {
            if xen.version < min {
                reasons.push(Reason::XenVersion {
                    have: xen.version,
                    need: min,
                });
            }
        }
    }
    // accounting: the slot's own allocation (if any) is already in `allocations`; a slot in use is
    // refused above, so only count others.
    let others: Vec<Allocation> = allocations
        .iter()
        .filter(|a| a.slot != slot.name)
        .cloned()
        .collect();
    let u = used(&others);
    let checks: [(&'static str, u64, u64, u64, &'static str); 3] = [
        (
            "memory",
            u.memory_mib,
            slot.memory_mib,
            site.host.memory_mib,
            "MiB",
        ),
        (
            "vcpus",
            u.vcpus,
            u64::from(slot.vcpus),
            u64::from(site.host.vcpus),
            "",
        ),
        ("disk", u.disk_mib, slot.disk_mib, site.host.disk_mib, "MiB"),
    ];
    for (resource, in_use, amount, limit, unit) in checks {
        if in_use.saturating_add(amount) > limit {
            reasons.push(Reason::HostOvercommit {
                resource,
                in_use,
                slot: amount,
                limit,
                unit,
            });
        }
    }
    reasons
}

/// Chooses a slot for a wafer of `vo` with `req`, given the running `allocations`.
///
/// With `wanted`, only that slot is considered. Among fitting slots the smallest (memory, then
/// vcpus, then disk, then name) is taken so large slots stay free for large wafers.
pub fn place(
    site: &Site,
    req: &Requirements,
    vo: &str,
    allocations: &[Allocation],
    wanted: Option<&str>,
) -> Result<Placement, FitError> {
    if site.slots.is_empty() {
        return Err(FitError::NoSlots);
    }
    if let Some(w) = wanted {
        if site.slot(w).is_none() {
            return Err(FitError::UnknownSlot {
                name: w.to_string(),
                known: site.slots.iter().map(|s| s.name.clone()).collect(),
            });
        }
    }
    let mut fitting: Vec<&SlotConfig> = Vec::new();
    let mut rejections = Vec::new();
    for slot in &site.slots {
        if let Some(w) = wanted {
            if slot.name != w {
                continue;
            }
        }
        let reasons = check_slot(site, slot, req, vo, allocations);
        if reasons.is_empty() {
            fitting.push(slot);
        } else {
            rejections.push(SlotRejection {
                slot: slot.name.clone(),
                reasons,
            });
        }
    }
    fitting.sort_by(|a, b| {
        (a.memory_mib, a.vcpus, a.disk_mib, &a.name).cmp(&(
            b.memory_mib,
            b.vcpus,
            b.disk_mib,
            &b.name,
        ))
    });
    match fitting.first() {
        Some(slot) => {
            let guest_type = match site.xen() {
                Some(xen) => req
                    .guest_types
                    .iter()
                    .copied()
                    .find(|g| xen.guest_types.contains(g))
                    .ok_or_else(|| FitError::NoFit {
                        vo: vo.to_string(),
                        rejections: rejections.clone(),
                    })?,
                // QEMU boots a full machine
                None => GuestType::Hvm,
            };
            tracing::debug!(slot = %slot.name, %guest_type, "slot chosen");
            Ok(Placement {
                slot: slot.name.clone(),
                guest_type,
            })
        }
        None => Err(FitError::NoFit {
            vo: vo.to_string(),
            rejections,
        }),
    }
}

/// Per-slot view for `wafer slots`/`ps`: who holds each slot.
pub fn slot_table<'a>(
    site: &'a Site,
    allocations: &'a [Allocation],
) -> BTreeMap<&'a str, Option<&'a str>> {
    site.slots
        .iter()
        .map(|s| {
            (
                s.name.as_str(),
                allocations
                    .iter()
                    .find(|a| a.slot == s.name)
                    .map(|a| a.deployment.as_str()),
            )
        })
        .collect()
}
