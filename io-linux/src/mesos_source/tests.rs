//! The poll loop on scripted sources under tokio's paused clock (exact schedules), and the
//! file source on a real file.

use super::outcome::Reason;
use super::*;
use minuteman_core::vip::{Backend, Protocol, Vip, VipAddr};
use std::collections::VecDeque;
use std::net::Ipv4Addr;
use tokio::time::Instant;

const AGENT: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9));
const MS: Duration = Duration::from_millis(1);

fn vips(port: u16) -> VipSet {
    let mut set = VipSet::new();
    set.insert(
        Vip {
            protocol: Protocol::Tcp,
            addr: VipAddr::Ip(IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3))),
            port: 5000,
        },
        Backend {
            ip: AGENT,
            port,
            agent: AGENT,
            weight: 1,
        },
    );
    set
}

/// An agent state with one running task on port `port` of VIP 10.1.2.3:5000.
fn state(port: u16) -> String {
    format!(
        r#"{{"pid":"slave(1)@10.0.0.9:5051","frameworks":[{{"id":"F","name":"marathon","executors":[{{"id":"e","tasks":[{{"id":"web.1","name":"web","state":"TASK_RUNNING","framework_id":"F","discovery":{{"name":"web","visibility":"FRAMEWORK","ports":{{"ports":[{{"number":{port},"protocol":"tcp","labels":{{"labels":[{{"key":"VIP_0","value":"10.1.2.3:5000"}}]}}}}]}}}},"statuses":[{{"state":"TASK_RUNNING","timestamp":1.0}}]}}]}}]}}]}}"#
    )
}

fn good(port: u16) -> Result<Good, PollError> {
    Ok(Good {
        services: vips(port),
        tasks: Default::default(),
        warnings: vec![],
    })
}

fn fail(reason: Reason) -> Result<Good, PollError> {
    Err(PollError::new(reason, "scripted"))
}

/// Answers from a script, noting when it was asked; cancels `done` when the script ends.
struct Scripted<const BACKS_OFF: bool> {
    script: VecDeque<Result<Good, PollError>>,
    asked: Vec<Instant>,
    done: CancellationToken,
}

impl<const B: bool> Source for &mut Scripted<B> {
    const BACKS_OFF: bool = B;
    async fn poll(&mut self) -> Result<Good, PollError> {
        self.asked.push(Instant::now());
        match self.script.pop_front() {
            Some(answer) => answer,
            None => {
                self.done.cancel();
                std::future::pending().await
            }
        }
    }
}

fn scripted<const B: bool>(
    script: Vec<Result<Good, PollError>>,
    shutdown: &CancellationToken,
) -> Scripted<B> {
    Scripted {
        script: script.into(),
        asked: Vec::new(),
        done: shutdown.clone(),
    }
}

const SCHEDULE: Schedule = Schedule {
    interval: Duration::from_millis(100),
    max_backoff: Duration::from_millis(1000),
};

/// Runs `source` to the end of its script; the gaps between polls, in ms.
async fn gaps<const B: bool>(
    source: &mut Scripted<B>,
    metrics: &ShellMetrics,
    tx: &watch::Sender<Option<LocalServices>>,
    shutdown: &CancellationToken,
) -> Vec<u128> {
    drive(&mut *source, SCHEDULE, AGENT, metrics, tx, shutdown, || 0.0).await;
    source
        .asked
        .windows(2)
        .map(|w| (w[1] - w[0]).as_millis())
        .collect()
}

fn failures(metrics: &ShellMetrics, reason: &'static str) -> u64 {
    metrics
        .mesos_poll_failures
        .get_or_create(&Why::new(reason))
        .get()
}

#[tokio::test(start_paused = true)]
async fn backoff_grows_to_the_cap_and_resets_on_success() {
    let shutdown = CancellationToken::new();
    let metrics = ShellMetrics::default();
    let (tx, mut rx) = watch::channel(None);
    let mut source = scripted::<true>(
        vec![
            good(1),
            fail(Reason::Parse),
            fail(Reason::Status),
            fail(Reason::Status),
            fail(Reason::Timeout),
            fail(Reason::Http),
            good(1),
            fail(Reason::Io),
            good(2),
        ],
        &shutdown,
    );
    let gaps = gaps(&mut source, &metrics, &tx, &shutdown).await;
    // After: ok, 1 failure, 2, 3, 4 (capped), 5 (capped), ok (reset), 1 failure, ok.
    assert_eq!(gaps, [100, 200, 400, 800, 1000, 1000, 100, 200, 100]);
    assert_eq!(metrics.mesos_polls.get(), 10);
    assert_eq!(failures(&metrics, "parse"), 1);
    assert_eq!(failures(&metrics, "status"), 2);
    assert_eq!(failures(&metrics, "timeout"), 1);
    assert_eq!(failures(&metrics, "http"), 1);
    assert_eq!(failures(&metrics, "io"), 1);
    // The same state after the failures is no change: published twice in all.
    assert_eq!(metrics.mesos_changes.get(), 2);
    assert!(rx.has_changed().unwrap());
    let published = rx.borrow_and_update().clone().unwrap();
    assert_eq!(published.agents, [AGENT]);
    assert_eq!(*published.services, vips(2));
}

#[tokio::test(start_paused = true)]
async fn failures_publish_nothing_and_an_empty_state_is_published() {
    let shutdown = CancellationToken::new();
    let metrics = ShellMetrics::default();
    let (tx, mut rx) = watch::channel(None);
    let mut source = scripted::<true>(vec![good(1)], &shutdown);
    gaps(&mut source, &metrics, &tx, &shutdown).await;
    assert_eq!(
        rx.borrow_and_update().as_ref().unwrap().services.as_ref(),
        &vips(1)
    );

    let shutdown = CancellationToken::new();
    let mut source = scripted::<true>(
        vec![
            fail(Reason::Parse),
            fail(Reason::TooLarge),
            fail(Reason::Timeout),
        ],
        &shutdown,
    );
    gaps(&mut source, &metrics, &tx, &shutdown).await;
    assert!(!rx.has_changed().unwrap(), "a failure published something");
    assert_eq!(rx.borrow().as_ref().unwrap().services.as_ref(), &vips(1));

    let shutdown = CancellationToken::new();
    let empty = Ok(Good::default());
    let mut source = scripted::<true>(vec![empty], &shutdown);
    gaps(&mut source, &metrics, &tx, &shutdown).await;
    assert!(rx.has_changed().unwrap());
    let published = rx.borrow_and_update().clone().unwrap();
    assert!(published.services.is_empty());
    assert_eq!(published.agents, [AGENT]);
    assert_eq!(metrics.mesos_changes.get(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_seeded_channel_sees_no_change_for_the_same_state() {
    let shutdown = CancellationToken::new();
    let metrics = ShellMetrics::default();
    let seeded = LocalServices {
        agents: vec![AGENT],
        services: vips(1).into(),
        tasks: Default::default(),
    };
    let (tx, rx) = watch::channel(Some(seeded));
    let mut source = scripted::<true>(vec![good(1), good(1)], &shutdown);
    gaps(&mut source, &metrics, &tx, &shutdown).await;
    assert!(!rx.has_changed().unwrap());
    assert_eq!(metrics.mesos_changes.get(), 0);
}

#[tokio::test(start_paused = true)]
async fn the_file_source_keeps_its_interval_through_failures() {
    let shutdown = CancellationToken::new();
    let metrics = ShellMetrics::default();
    let (tx, _rx) = watch::channel(None);
    let mut source = scripted::<false>(
        vec![good(1), fail(Reason::Io), fail(Reason::Parse), good(1)],
        &shutdown,
    );
    let gaps = gaps(&mut source, &metrics, &tx, &shutdown).await;
    assert_eq!(gaps, [100, 100, 100, 100]);
}

#[tokio::test(start_paused = true)]
async fn warnings_are_counted_every_poll() {
    let shutdown = CancellationToken::new();
    let metrics = ShellMetrics::default();
    let (tx, _rx) = watch::channel(None);
    let warned = || {
        Ok(Good {
            services: vips(1),
            tasks: Default::default(),
            warnings: vec!["task a: bad".into(), "task b: bad".into()],
        })
    };
    let mut source = scripted::<true>(vec![warned(), warned(), good(1)], &shutdown);
    gaps(&mut source, &metrics, &tx, &shutdown).await;
    assert_eq!(metrics.mesos_warnings.get(), 4);
    assert_eq!(metrics.mesos_changes.get(), 1);
}

#[tokio::test(start_paused = true)]
async fn shutdown_ends_the_loop_during_a_poll_and_during_a_sleep() {
    let metrics = ShellMetrics::default();
    let (tx, _rx) = watch::channel(None);
    // During a poll: the script ends with a poll that never answers; the cancel comes from
    // outside, later.
    let shutdown = CancellationToken::new();
    let never = CancellationToken::new();
    let mut source = scripted::<true>(vec![good(1)], &never);
    let stop = shutdown.clone();
    let started = Instant::now();
    tokio::join!(
        drive(
            &mut source,
            SCHEDULE,
            AGENT,
            &metrics,
            &tx,
            &shutdown,
            || 0.0
        ),
        async move {
            tokio::time::sleep(Duration::from_secs(30)).await;
            stop.cancel();
        }
    );
    assert_eq!(started.elapsed(), Duration::from_secs(30));
    assert_eq!(source.asked.len(), 2);
    // During a sleep: a long backoff is cut short.
    let shutdown = CancellationToken::new();
    let mut source = scripted::<true>(vec![fail(Reason::Http); 10], &never);
    let stop = shutdown.clone();
    let started = Instant::now();
    tokio::join!(
        drive(
            &mut source,
            SCHEDULE,
            AGENT,
            &metrics,
            &tx,
            &shutdown,
            || 0.0
        ),
        async move {
            tokio::time::sleep(150 * MS).await;
            stop.cancel();
        }
    );
    assert_eq!(started.elapsed(), 150 * MS);
    assert_eq!(source.asked.len(), 1);
}

#[test]
fn run_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let subscribe = MesosSource::Subscribe {
        url: "http://127.0.0.1:1/api/v1".into(),
        auth_token: None,
        ca_file: None,
        timeout: Duration::from_secs(1),
    };
    for source in [MesosSource::url("http://127.0.0.1:1/state"), subscribe] {
        let (tx, _rx) = watch::channel(None);
        let future = run(
            MesosConfig::new(source, AGENT),
            ShellMetrics::default(),
            tx,
            CancellationToken::new(),
        );
        assert_send(&future);
    }
}

#[test]
fn config_defaults_and_a_redacted_token() {
    let cfg = MesosConfig::new(MesosSource::File { path: "/x".into() }, AGENT);
    assert_eq!(cfg.poll_interval, Duration::from_secs(2));
    assert_eq!(cfg.max_backoff, Duration::from_secs(60));
    assert_eq!(cfg.max_state_bytes, 64 << 20);
    let source = MesosSource::Url {
        url: "https://a/state".into(),
        auth_token: Some("s3cret".into()),
        ca_file: None,
        timeout: Duration::from_secs(1),
    };
    let shown = format!("{source:?}");
    assert!(!shown.contains("s3cret"), "{shown}");
    assert!(shown.contains("<redacted>"), "{shown}");
    let source = MesosSource::Subscribe {
        url: "https://m/api/v1".into(),
        auth_token: Some("s3cret".into()),
        ca_file: None,
        timeout: Duration::from_secs(1),
    };
    let shown = format!("{source:?}");
    assert!(!shown.contains("s3cret"), "{shown}");
    assert!(
        shown.contains("Subscribe") && shown.contains("<redacted>"),
        "{shown}"
    );
}

mod file_source {
    use super::super::file::FileSource;
    use super::*;
    use std::path::Path;
    use std::time::SystemTime;

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            let dir = std::env::temp_dir().join(format!(
                "minuteman-mesos-{name}-{}-{:?}",
                std::process::id(),
                SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn age(path: &Path, by: Duration) {
        let file = std::fs::File::options().write(true).open(path).unwrap();
        file.set_modified(SystemTime::now() - by).unwrap();
    }

    #[tokio::test]
    async fn reads_only_changed_files_and_reports_every_failure() {
        let dir = TempDir::new("file");
        let path = dir.0.join("state.json");
        let mut source = FileSource::new(path.clone(), AGENT, 4096);

        let err = source.poll().await.unwrap_err();
        assert_eq!(err.reason, Reason::Io, "{err:?}");
        assert!(err.detail.contains("missing"), "{err:?}");

        std::fs::write(&path, state(31000)).unwrap();
        assert_eq!(source.poll().await.unwrap().services, vips(31000));
        assert_eq!((source.reads, source.parses), (1, 1));
        // Just written: racy, so read again, but the same bytes are not parsed again.
        assert_eq!(source.poll().await.unwrap().services, vips(31000));
        assert_eq!((source.reads, source.parses), (2, 1));

        // A rewrite of the same length at once (same second on a coarse clock) is seen.
        std::fs::write(&path, state(31001)).unwrap();
        assert_eq!(source.poll().await.unwrap().services, vips(31001));
        assert_eq!((source.reads, source.parses), (3, 2));

        // Old enough: one read, then stat only.
        age(&path, Duration::from_secs(3600));
        source.poll().await.unwrap();
        assert_eq!(source.reads, 4);
        for _ in 0..3 {
            assert_eq!(source.poll().await.unwrap().services, vips(31001));
        }
        assert_eq!((source.reads, source.parses), (4, 2));

        // Corrupt: a parse failure, reported on every poll without re-reading.
        std::fs::write(&path, "{\"frameworks\": [").unwrap();
        age(&path, Duration::from_secs(3600));
        assert_eq!(source.poll().await.unwrap_err().reason, Reason::Parse);
        assert_eq!(source.poll().await.unwrap_err().reason, Reason::Parse);
        assert_eq!(source.reads, 5);

        // Too large, then restored.
        std::fs::write(&path, vec![b' '; 5000]).unwrap();
        assert_eq!(source.poll().await.unwrap_err().reason, Reason::TooLarge);
        std::fs::write(&path, state(31001)).unwrap();
        assert_eq!(source.poll().await.unwrap().services, vips(31001));

        // A directory is not a state.
        let mut source = FileSource::new(dir.0.clone(), AGENT, 4096);
        assert_eq!(source.poll().await.unwrap_err().reason, Reason::Io);
    }
}

/// The injected source answers what its handle holds when a poll begins, after the
/// handle's delay; down is an `http` failure and garbage a `parse` failure, and `run`
/// publishes only the good states.
#[tokio::test(start_paused = true)]
async fn the_injected_source_answers_its_document_after_its_delay() {
    let mesos = InjectedMesos::new();
    let down = mesos.poll(AGENT).await.expect_err("nothing served yet");
    assert_eq!(down.reason, Reason::Http);
    mesos.serve(state(8080));
    mesos.set_delay(Duration::from_secs(3));
    let start = Instant::now();
    let answer = mesos.poll(AGENT).await.expect("a good document");
    assert_eq!(start.elapsed(), Duration::from_secs(3));
    assert_eq!(answer.services, vips(8080));
    mesos.serve(&b"{\"frameworks\": 17"[..]);
    let garbage = mesos.poll(AGENT).await.expect_err("garbage");
    assert_eq!(garbage.reason, Reason::Parse);

    // Through the poll loop: the good state is published, garbage keeps it.
    mesos.set_delay(Duration::ZERO);
    mesos.serve(state(8081));
    let metrics = ShellMetrics::default();
    let (tx, mut rx) = watch::channel(None);
    let stop = CancellationToken::new();
    let cfg = MesosConfig::new(MesosSource::Injected(mesos.clone()), AGENT);
    let task = tokio::spawn(run(cfg, metrics.clone(), tx, stop.clone()));
    rx.changed().await.unwrap();
    let published = rx.borrow_and_update().clone().expect("a state");
    assert_eq!(*published.services, vips(8081));
    mesos.serve(&b"not json"[..]);
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(failures(&metrics, "parse") >= 1);
    assert!(!rx.has_changed().unwrap(), "garbage published nothing");
    stop.cancel();
    task.await.unwrap();
}
