//! Debugging aid: `cargo run --release -p minuteman-sim --example watch_window -- SEED NODE FROM_MS TO_MS`
//! runs the 600 s freeze evaluation (one host freeze per node per minute, LOSS env, 1% by
//! default) to FROM_MS and prints NODE's messages and events until TO_MS, then the false
//! positives about it.
use minuteman_core::Time;
use minuteman_sim::{Conditions, MembershipRun, Simulation};
use std::time::Duration;
fn main() {
    let a: Vec<u64> = std::env::args()
        .skip(1)
        .map(|s| s.parse().expect("a number"))
        .collect();
    let (seed, node, from, to) = (a[0], a[1] as usize, a[2], a[3]);
    let loss = std::env::var("LOSS").map_or(0.01, |v| v.parse().expect("a number"));
    let run = MembershipRun {
        seed,
        loss,
        crash_fraction: 0.0,
        duration: Duration::from_secs(600),
        conditions: Conditions {
            host_freezes: 1.0,
            ..Conditions::default()
        },
        ..MembershipRun::default()
    };
    let mut sim = Simulation::new(run.cluster_config(), seed);
    sim.run_until(Time::from_millis(from));
    if std::env::var("ALL").is_ok() {
        sim.watch.extend(0..sim.len());
    } else {
        sim.watch.insert(node);
    }
    sim.run_until(Time::from_millis(to));
    let id = sim.id(node);
    for f in sim.false_positives.iter().filter(|f| f.target == id) {
        println!("fp at {} by {}", f.at, f.observer);
    }
}
