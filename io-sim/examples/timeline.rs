//! Debugging aid: per-second traffic of a cluster run, by message kind.
//! `NODES=1000 cargo run --release -p minuteman-sim --example timeline -- SEED SECS`
use minuteman_core::Time;
use minuteman_sim::{ClusterConfig, Simulation};
fn main() {
    let mut args = std::env::args().skip(1);
    let seed: u64 = args.next().expect("SEED").parse().expect("a number");
    let secs: u64 = args.next().expect("SECS").parse().expect("a number");
    let nodes = std::env::var("NODES").map_or(1000, |v| v.parse().expect("a number"));
    let mut sim = Simulation::new(ClusterConfig::new(nodes), seed);
    let mut last = sim.traffic.clone();
    for s in 1..=secs {
        let wall = std::time::Instant::now();
        sim.run_until(Time::from_millis(s * 1000));
        if s == 5 {
            let victims = sim.sample_nodes(nodes / 8);
            sim.crash_batch(&victims);
        }
        let t = &sim.traffic;
        let d: Vec<u64> = (0..t.by_kind.len())
            .map(|k| t.by_kind[k].0 - last.by_kind[k].0)
            .collect();
        println!(
            "t={s}s wall {:>6} ms msgs {:>9} records {:>8} digest {:>6} neighbor {:>6} join {:>5} fj {:>6} disc {:>5} fp {}",
            wall.elapsed().as_millis(),
            t.messages_sent - last.messages_sent,
            d[9], d[10], d[2], d[0], d[1], d[4], sim.false_positives.len()
        );
        last = t.clone();
    }
}
