//! Every writer of one audit log extends one chain: four worker processes of a service and the
//! CLI's `--config` commands (data and key commands) appending at the same time leave one
//! gapless log that `sealbox audit verify` accepts whole, with every event present once.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::{Scratch, code, run_with_env, stderr, stdout};

/// Set in the worker processes: the config they open, and the file that tells them to stop.
const CONFIG_ENV: &str = "SEALBOX_WRITERS_TEST_CONFIG";
const STOP_ENV: &str = "SEALBOX_WRITERS_TEST_STOP";

/// One worker of a pre-forking service: its own client from the service's config, one write,
/// then reads until told to stop; prints how many reads it made. Runs only when spawned.
/// (`max_wait: 10s` in the config: no event may be dropped for a full queue on this busy
/// machine, so every read must be in the log.)
#[test]
fn audit_writers_worker_child() {
    let (Ok(config), Ok(stop)) = (std::env::var(CONFIG_ENV), std::env::var(STOP_ENV)) else {
        return;
    };
    let c = sealbox::BlockingSealbox::from_config(&config).unwrap();
    let name = format!("app/worker-{}", std::process::id());
    let mut raw = *b"worker-value";
    c.put(&name, &sealbox::Secret::from_mut_slice(&mut raw).unwrap())
        .unwrap();
    let mut reads = 0u64;
    while !Path::new(&stop).exists() {
        for _ in 0..10 {
            c.get(&name).unwrap();
        }
        reads += 10;
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    c.flush_audit().unwrap();
    // On a line of its own (the harness prints the test's name before it).
    println!("\nreads={reads}");
}

fn service_config(s: &Scratch) -> std::path::PathBuf {
    let config = s.path("sealbox.yaml");
    std::fs::write(
        &config,
        "secrets: {provider: local, config: {path: ./vault.db, key_file: ./master.key}}\n\
         principal: user:ops\n\
         audit: {path: ./audit.jsonl, fsync: batch, max_wait: 10s}\n",
    )
    .unwrap();
    config
}

#[test]
fn workers_and_cli_commands_appending_at_once_leave_one_chain_that_verifies() {
    if std::env::var(CONFIG_ENV).is_ok() {
        return;
    }
    const WORKERS: usize = 4;
    let s = Scratch::new();
    let config = service_config(&s);
    let c = config.to_str().unwrap();
    let cli = |args: &[&str]| {
        let mut all = vec!["--config", c];
        all.extend_from_slice(args);
        let o = run_with_env(&all, b"", &[]);
        assert_eq!(code(&o), 0, "{args:?}: {}{}", stdout(&o), stderr(&o));
    };
    // The vault and its master key exist before the workers start, as in a deployment.
    cli(&["put", "app/seed", "--value", "s"]);
    let log = s.path("audit.jsonl");
    let stop = s.path("stop");
    let workers: Vec<std::process::Child> = (0..WORKERS)
        .map(|_| {
            std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "audit_writers_worker_child",
                    "--test-threads=1",
                    "--nocapture",
                ])
                .env(CONFIG_ENV, &config)
                .env(STOP_ENV, &stop)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    // Until every worker has written, then the CLI's commands while they keep reading.
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::read_to_string(&log)
        .unwrap_or_default()
        .matches("app/worker-")
        .count()
        < WORKERS
    {
        assert!(Instant::now() < deadline, "the workers did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut cli_events: Vec<(&str, String)> = Vec::new();
    for round in 0..2 {
        let name = format!("app/cli-{round}");
        cli(&["put", &name, "--value", "c"]);
        cli_events.push(("secret.write", name.clone()));
        cli(&["get", &name]);
        cli_events.push(("secret.read", name.clone()));
        cli(&["keys", "rotate", "--secret", &name]);
        cli_events.push(("key", name.clone()));
        cli(&["keys", "rotate-kek", "app"]);
        cli_events.push(("key", "app".to_owned()));
    }
    cli(&["keys", "rotate-master"]);
    cli_events.push(("key", "master".to_owned()));
    std::fs::write(&stop, b"").unwrap();

    let mut reads_by_worker = Vec::new();
    for w in workers {
        let out = w.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "a worker failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let reads: u64 = text
            .lines()
            .find_map(|l| l.split_once("reads=").map(|(_, n)| n.trim()))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no read count from a worker: {text}"));
        reads_by_worker.push(reads);
    }

    let log_s = log.to_str().unwrap();
    let o = run_with_env(
        &["--json", "--config", c, "audit", "verify", log_s],
        b"",
        &[],
    );
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["anchored"], true, "{report}");

    // One chain: seq 0, 1, 2, ... in file order, each once.
    let events: Vec<serde_json::Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["seq"], i as u64, "line {}", i + 1);
    }
    assert_eq!(report["lines"], events.len() as u64, "{report}");
    // Every worker's reads, each once.
    let worker_reads = events
        .iter()
        .filter(|e| {
            e["event"] == "secret.read"
                && e["resource"]
                    .as_str()
                    .is_some_and(|r| r.starts_with("app/worker-"))
        })
        .count() as u64;
    assert_eq!(worker_reads, reads_by_worker.iter().sum::<u64>());
    let worker_writes = events
        .iter()
        .filter(|e| {
            e["event"] == "secret.write"
                && e["resource"]
                    .as_str()
                    .is_some_and(|r| r.starts_with("app/worker-"))
        })
        .count();
    assert_eq!(worker_writes, WORKERS);
    // Every CLI command's event, once, between the workers' lines.
    let first_worker_line = events
        .iter()
        .position(|e| {
            e["resource"]
                .as_str()
                .is_some_and(|r| r.starts_with("app/worker-"))
        })
        .unwrap();
    for (what, resource) in &cli_events {
        let found: Vec<usize> = events
            .iter()
            .enumerate()
            .filter(|(_, e)| {
                (e["event"] == *what || e["action"] == *what)
                    && e["resource"] == resource.as_str()
                    && e["success"] == true
            })
            .map(|(i, _)| i)
            .collect();
        let wanted = cli_events
            .iter()
            .filter(|(w, r)| w == what && r == resource)
            .count();
        assert_eq!(found.len(), wanted, "{what} events for {resource}");
        assert!(
            found.iter().all(|&i| i > first_worker_line),
            "{what} {resource} was written before the workers started"
        );
    }
    let key_events = events.iter().filter(|e| e["action"] == "key").count();
    assert_eq!(
        key_events,
        cli_events.iter().filter(|(w, _)| *w == "key").count()
    );
}
