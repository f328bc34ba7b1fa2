//! Debugging aid: `cargo run --release -p minuteman-sim --example freeze_restore -- SEED MS [WATCH]`
//! freezes node 5 of a converged 40-node cluster for MS milliseconds and prints when every
//! live node sees it reachable again (WATCH=1 prints node 5's events after the thaw).
use minuteman_core::Time;
use minuteman_sim::{ClusterConfig, Simulation};
use std::time::Duration;
fn main() {
    let mut args = std::env::args().skip(1);
    let seed: u64 = args.next().expect("SEED").parse().expect("a number");
    let freeze: u64 = args.next().expect("MS").parse().expect("a number");
    let watch = args.next().is_some();
    let mut cfg = ClusterConfig::new(40);
    if let Ok(loss) = std::env::var("LOSS") {
        cfg.net = minuteman_sim::NetConfig::lossy(loss.parse().expect("a number"));
    }
    let mut sim = Simulation::new(cfg, seed);
    sim.run_until(Time::from_millis(3_000));
    assert!(sim.is_converged());
    sim.freeze_host(5, Duration::from_millis(freeze));
    sim.run_until(Time::from_millis(3_000 + freeze));
    if watch {
        sim.watch.insert(5);
    }
    sim.run_until(Time::from_millis(8_000));
    for f in sim.fault_log(5) {
        println!(
            "freeze {}..{} declared down {} restored at {:?} ({:?} after the thaw)",
            f.start,
            f.end,
            f.declared_down,
            f.restored_at,
            f.restored_at.map(|r| r - f.end)
        );
    }
}
