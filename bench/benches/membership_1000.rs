//! The 1000-node membership run (125 crash at 5 s, 30 simulated seconds), timed once:
//! criterion's repeated sampling would take many minutes. `cargo bench --bench
//! membership_1000` prints the report, including the wall-clock time.

use minuteman_sim::MembershipRun;

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        // `cargo test --benches` and `--list` probes: nothing to run in test mode.
        return;
    }
    let run = MembershipRun {
        nodes: 1000,
        ..MembershipRun::default()
    };
    println!("seed             {}", run.seed);
    let (report, _) = run.run();
    print!("{}", report.render());
}
