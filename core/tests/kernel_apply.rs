//! The simulated kernel table: every op's success and each of its refusals, with the state
//! left unchanged by a refusal and `apply_all` stopping at the first one.

use minuteman_core::kernel::{ApplyError, KernelState, Op, Service, MAX_WEIGHT};
use minuteman_core::Protocol;
use std::net::SocketAddr;

fn sa(addr: &str) -> SocketAddr {
    addr.parse().unwrap()
}

fn svc() -> Service {
    Service::new(Protocol::Tcp, sa("10.0.0.1:80"))
}

fn add_dest(dest: &str, weight: u32) -> Op {
    Op::AddDestination {
        service: svc(),
        dest: sa(dest),
        weight,
    }
}

/// A table holding `svc()` with 10.1.0.1:80 at weight 1.
fn one() -> KernelState {
    let mut k = KernelState::default();
    k.apply_all(&[Op::AddService(svc()), add_dest("10.1.0.1:80", 1)])
        .unwrap();
    k
}

/// `op` is refused with `error` and leaves `state` as it was.
fn refused(state: KernelState, op: Op, error: ApplyError) {
    let mut k = state.clone();
    assert_eq!(k.apply(&op), Err(error));
    assert_eq!(k, state);
}

#[test]
fn every_op_does_what_it_says() {
    let mut k = one();
    assert_eq!(k.services[&svc()][&sa("10.1.0.1:80")], 1);
    k.apply(&Op::SetWeight {
        service: svc(),
        dest: sa("10.1.0.1:80"),
        weight: 0,
    })
    .unwrap();
    assert_eq!(k.services[&svc()][&sa("10.1.0.1:80")], 0);
    // same weight again: fine, as in IPVS
    k.apply(&Op::SetWeight {
        service: svc(),
        dest: sa("10.1.0.1:80"),
        weight: 0,
    })
    .unwrap();
    k.apply(&add_dest("10.1.0.2:80", MAX_WEIGHT)).unwrap();
    k.apply(&Op::RemoveDestination {
        service: svc(),
        dest: sa("10.1.0.1:80"),
    })
    .unwrap();
    assert_eq!(k.services[&svc()].len(), 1);
    k.apply(&Op::RemoveService(svc())).unwrap();
    assert_eq!(k, KernelState::default());
}

#[test]
fn existing_things_cannot_be_added() {
    refused(
        one(),
        Op::AddService(svc()),
        ApplyError::ServiceExists(svc()),
    );
    refused(
        one(),
        add_dest("10.1.0.1:80", 5),
        ApplyError::DestinationExists {
            service: svc(),
            dest: sa("10.1.0.1:80"),
        },
    );
}

#[test]
fn missing_things_cannot_be_touched() {
    let other = Service::new(Protocol::Udp, sa("10.0.0.1:80"));
    let dest = sa("10.1.0.9:80");
    for op in [
        Op::AddDestination {
            service: other,
            dest,
            weight: 1,
        },
        Op::SetWeight {
            service: other,
            dest,
            weight: 1,
        },
        Op::RemoveDestination {
            service: other,
            dest,
        },
        Op::RemoveService(other),
    ] {
        refused(one(), op, ApplyError::NoSuchService(other));
    }
    let missing = ApplyError::NoSuchDestination {
        service: svc(),
        dest,
    };
    refused(
        one(),
        Op::SetWeight {
            service: svc(),
            dest,
            weight: 1,
        },
        missing.clone(),
    );
    refused(
        one(),
        Op::RemoveDestination {
            service: svc(),
            dest,
        },
        missing,
    );
}

#[test]
fn the_kernel_refuses_mixed_families() {
    refused(
        one(),
        add_dest("[fd02::1]:80", 1),
        ApplyError::FamilyMismatch {
            service: svc(),
            dest: sa("[fd02::1]:80"),
        },
    );
    refused(
        one(),
        Op::SetWeight {
            service: svc(),
            dest: sa("[fd02::1]:80"),
            weight: 1,
        },
        ApplyError::FamilyMismatch {
            service: svc(),
            dest: sa("[fd02::1]:80"),
        },
    );
}

/// Unlike IPVS, any weight is taken: weights come from peers, and a diff built from them
/// must apply (the nft rendering scales them; an IPVS shell clamps to `MAX_WEIGHT`).
#[test]
fn any_weight_is_accepted() {
    let mut k = one();
    k.apply(&add_dest("10.1.0.2:80", u32::MAX)).unwrap();
    k.apply(&Op::SetWeight {
        service: svc(),
        dest: sa("10.1.0.1:80"),
        weight: MAX_WEIGHT + 1,
    })
    .unwrap();
    assert_eq!(k.services[&svc()][&sa("10.1.0.2:80")], u32::MAX);
}

#[test]
fn apply_all_stops_at_the_first_refusal() {
    let mut k = KernelState::default();
    let err = k.apply_all(&[
        Op::AddService(svc()),
        add_dest("10.1.0.1:80", 1),
        add_dest("10.1.0.1:80", 2),
        add_dest("10.1.0.3:80", 1),
    ]);
    assert_eq!(
        err,
        Err(ApplyError::DestinationExists {
            service: svc(),
            dest: sa("10.1.0.1:80"),
        })
    );
    assert_eq!(k, one());
}

#[test]
fn errors_read_well() {
    let e = ApplyError::NoSuchDestination {
        service: svc(),
        dest: sa("10.1.0.9:80"),
    };
    assert_eq!(
        e.to_string(),
        "no destination 10.1.0.9:80 in service tcp 10.0.0.1:80"
    );
    let v6 = Service::new(Protocol::Udp, sa("[fd01:c::1]:53"));
    assert_eq!(
        ApplyError::ServiceExists(v6).to_string(),
        "service udp [fd01:c::1]:53 already exists"
    );
}
