//! Site configuration, slots, address leases, contextualization disks and Xen guest configuration.
