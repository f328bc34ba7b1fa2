//! The nftables renderings of arbitrary desired states: from any applied state to any
//! desired one, the operations the core plans lead exactly there, the full rendering and
//! the delta never panic, the delta is empty when nothing changed, and a rendering names
//! every service it can represent.
//!
//! `cargo +nightly fuzz run kernel_render`

#![no_main]

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use minuteman_core::kernel::nft::{render_delta, render_full, representable, NftConfig};
use minuteman_core::kernel::{diff, KernelState, Op, Service};
use minuteman_core::Protocol;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

/// A small universe, so that the two states share services and destinations.
fn ip(u: &mut Unstructured<'_>, v4: bool) -> Result<IpAddr> {
    let k: u8 = u.int_in_range(0..=7)?;
    Ok(if v4 {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, k))
    } else {
        IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, u16::from(k)))
    })
}

fn state(u: &mut Unstructured<'_>) -> Result<KernelState> {
    let mut state = KernelState::default();
    for _ in 0..u.int_in_range(0..=12)? {
        let protocol = if u.arbitrary()? {
            Protocol::Tcp
        } else {
            Protocol::Udp
        };
        let port = *u.choose(&[0u16, 53, 80, 443, 65535])?;
        let v4 = u.arbitrary()?;
        let service = Service::new(protocol, SocketAddr::new(ip(u, v4)?, port));
        let mut dests = std::collections::BTreeMap::new();
        for _ in 0..u.int_in_range(0..=20)? {
            let weight = *u.choose(&[0u32, 1, 2, 100, u32::MAX])?;
            // A desired state's destinations are of their service's family.
            dests.insert(SocketAddr::new(ip(u, v4)?, u.arbitrary()?), weight);
        }
        state.services.insert(service, Arc::new(dests.into()));
    }
    Ok(state)
}

fn run(u: &mut Unstructured<'_>) -> Result<()> {
    let applied = state(u)?;
    let desired = state(u)?;
    let ops: Vec<Op> = diff(&applied, &desired);
    let mut reached = applied.clone();
    reached
        .apply_all(&ops)
        .expect("the planned operations apply to the state they were planned from");
    assert_eq!(reached, desired, "the plan leads to the desired state");
    let config = NftConfig::default();
    let full = render_full(&desired, &config);
    assert!(!full.is_empty());
    for service in desired.services.keys().filter(|s| representable(s)) {
        assert!(
            full.contains(&service.addr.port().to_string()),
            "{service:?} not in the rendering"
        );
    }
    let services: Vec<Service> = ops.iter().map(|op| *op.service()).collect();
    let _ = render_delta(&applied, &desired, &services, &config);
    assert!(render_delta(&desired, &desired, &services, &config).is_empty());
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
