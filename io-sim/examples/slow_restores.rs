//! Debugging aid: `cargo run --release -p minuteman-sim --example slow_restores -- SEED`
//! runs 600 s with one host freeze per node per minute and 1% loss, and prints the
//! freezes that were declared down and took longest to be restored, and the short ones
//! that were declared down.
use minuteman_sim::{Conditions, MembershipRun};
use std::time::Duration;
fn main() {
    let seed: u64 = std::env::args()
        .nth(1)
        .expect("SEED")
        .parse()
        .expect("a number");
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
    let (_, sim) = run.run();
    let mut rows = Vec::new();
    for i in 0..sim.len() {
        for f in sim.fault_log(i) {
            let length = f.end - f.start;
            let restore = f.restored_at.map(|r| r - f.end);
            if f.declared_down
                && (length < Duration::from_millis(150)
                    || restore.is_none_or(|r| r > Duration::from_millis(900)))
            {
                rows.push((i, f.start, length, restore));
            }
        }
    }
    for (i, start, length, restore) in rows {
        println!("node {i}: freeze at {start} for {length:?}, restored {restore:?} after");
        let id = sim.id(i);
        for f in sim
            .false_positives
            .iter()
            .filter(|f| f.target == id && f.at >= start && f.at <= start + Duration::from_secs(2))
        {
            println!(
                "   reported down at {} by {} ({:?}, observer {:?})",
                f.at, f.observer, f.cause, f.observer_fault
            );
        }
    }
}
