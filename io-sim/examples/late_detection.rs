//! Debugging aid: `NODES=200 cargo run --release -p minuteman-sim --example late_detection -- SEED`
//! runs the membership evaluation and prints, for the survivors slowest to see every crashed
//! node unreachable, their detection time and view-completeness counters.
use minuteman_sim::MembershipRun;
fn main() {
    let seed: u64 = std::env::args()
        .nth(1)
        .expect("SEED")
        .parse()
        .expect("a number");
    let env = |k: &str, d: f64| std::env::var(k).map_or(d, |v| v.parse().expect("a number"));
    let run = MembershipRun {
        seed,
        loss: env("LOSS", 0.0),
        nodes: env("NODES", 40.0) as usize,
        ..Default::default()
    };
    if std::env::var("EXPLAIN").is_ok() {
        explain(&run);
        return;
    }
    let (report, sim) = run.run();
    println!("detection {:?}", report.detection_ms);
    let mut times = sim.detection_times();
    times.sort_by_key(|(_, t)| std::cmp::Reverse(*t));
    for (i, t) in times.iter().take(5) {
        let c = sim.node(*i).expect("alive").counters();
        println!(
            "node {i}: {t:?} complete by peer {} by timeout {} withheld {}",
            c.views_completed_by_peer, c.views_completed_by_timeout, c.kernel_removals_withheld
        );
    }
}

/// At 1 s after the crash: who still sees which crashed node, and through which edges.
#[allow(dead_code)]
fn explain(run: &MembershipRun) {
    use minuteman_core::Time;
    let mut sim = minuteman_sim::Simulation::new(run.cluster_config(), run.seed);
    sim.run_until(Time::from_duration(run.crash_at));
    let incomplete: Vec<usize> = sim
        .alive()
        .filter(|&i| !sim.node(i).unwrap().view_complete())
        .collect();
    println!("incomplete at the crash: {incomplete:?}");
    let victims = sim.sample_nodes(run.nodes / 8);
    let ids: Vec<_> = victims.iter().map(|&v| sim.id(v)).collect();
    for j in sim.alive().collect::<Vec<_>>() {
        for id in &ids {
            if let Some(t) = sim.node(j).unwrap().link_timeout(id) {
                if t > std::time::Duration::from_millis(100) {
                    println!("at the crash {j} -> {id}: timeout {t:?}");
                }
            }
        }
    }
    sim.crash_batch(&victims);
    sim.run_for(std::time::Duration::from_secs(1));
    let observer = sim.alive().next().unwrap();
    let node = sim.node(observer).unwrap();
    for id in &ids {
        if node.is_reachable(id) {
            let holders: Vec<String> = sim
                .alive()
                .filter(|&j| sim.node(j).unwrap().is_active(id))
                .map(|j| {
                    format!(
                        "{j} (record lists it: {})",
                        node.record(&sim.id(j).addr)
                            .is_some_and(|r| r.body.adjacency.contains(id))
                    )
                })
                .collect();
            println!("{id} still reachable for {observer}; live nodes with it active: {holders:?}");
        }
    }
}
