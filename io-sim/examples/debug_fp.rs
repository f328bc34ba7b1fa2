//! Debugging aid: `cargo run --release -p minuteman-sim --example debug_fp -- SEED [WATCH_NODE]`
//! runs the membership evaluation (LOSS env var for loss) and prints the false positives,
//! with every event and message of WATCH_NODE on stderr.
use minuteman_core::Time;
use minuteman_sim::{MembershipRun, Simulation};
fn main() {
    let mut args = std::env::args().skip(1);
    let seed: u64 = args.next().expect("SEED").parse().expect("a number");
    let watch: Option<usize> = args.next().map(|s| s.parse().expect("a node index"));
    let loss: f64 = std::env::var("LOSS")
        .map(|v| v.parse().expect("a probability"))
        .unwrap_or(0.0);
    let env = |k: &str, d: u64| std::env::var(k).map_or(d, |v| v.parse().expect("a number"));
    let run = MembershipRun {
        seed,
        loss,
        nodes: env("NODES", 40) as usize,
        duration: std::time::Duration::from_secs(env("SECS", 30)),
        ..Default::default()
    };
    let mut sim = Simulation::new(run.cluster_config(), seed);
    sim.watch.extend(watch);
    sim.run_until(Time::from_duration(run.crash_at));
    println!(
        "degrees before crash {:?} asym {}",
        degrees(&sim),
        sim.asymmetric_links().len()
    );
    let victims = sim.sample_nodes(run.nodes / 8);
    println!("victims {victims:?}");
    sim.crash_batch(&victims);
    let comps = sim.overlay_components();
    println!(
        "components right after crash: {:?}",
        comps.iter().map(|c| c.len()).collect::<Vec<_>>()
    );
    sim.run_until(Time::from_duration(run.duration));
    let mut by_target: std::collections::BTreeMap<_, (usize, Time)> = Default::default();
    for f in &sim.false_positives {
        by_target.entry(f.target).or_insert((0, f.at)).0 += 1;
    }
    println!("false positives by target (count, first): {by_target:?}");
    for fp in sim.false_positives.iter().take(5) {
        println!("{fp:?}");
    }
    println!(
        "components {} degrees {:?}",
        sim.overlay_components().len(),
        degrees(&sim)
    );
    println!("{:?}", sim.traffic);
    for (i, (m, b)) in sim.traffic.by_kind.iter().enumerate() {
        println!(
            "{:>15} {:>10} msgs {:>12} bytes",
            minuteman_core::wire::Message::KIND_NAMES[i],
            m,
            b
        );
    }
}

#[allow(dead_code)]
fn degrees(sim: &Simulation) -> Vec<usize> {
    let mut h = vec![0; 8];
    for i in sim.alive() {
        h[sim.node(i).unwrap().active_view().count()] += 1;
    }
    h
}
