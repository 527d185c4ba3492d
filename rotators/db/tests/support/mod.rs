//! Real database servers for the tests: PostgreSQL and MariaDB from their Debian packages,
//! each started as an unprivileged process (the package's own `postgres` / `mysql` user when
//! the tests run as root) in a temporary directory on a free loopback port, and stopped (then
//! the directory removed) when the guard drops.

#![allow(dead_code)]

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// The admin password both servers are set up with.
pub const ADMIN_PASSWORD: &str = "sealbox-test-admin";

/// A uid/gid to run a server as: the current user, or `account` (else `nobody`) as root.
#[derive(Clone, Copy)]
struct RunAs(Option<(u32, u32)>);

impl RunAs {
    fn for_account(account: &str) -> RunAs {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return RunAs(None);
        }
        let passwd = std::fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
        let ids = |name: &str| {
            passwd.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() > 3 && f[0] == name)
                    .then(|| (f[2].parse().unwrap(), f[3].parse().unwrap()))
            })
        };
        RunAs(Some(ids(account).or_else(|| ids("nobody")).expect(
            "running as root, the tests need an unprivileged account",
        )))
    }

    fn command(self, program: impl AsRef<Path>) -> Command {
        let mut cmd = Command::new(program.as_ref());
        // A directory the server's user can enter (initdb refuses a working directory it
        // cannot read).
        cmd.current_dir(std::env::temp_dir());
        if let Some((uid, gid)) = self.0 {
            // std drops the supplementary groups when a root parent sets the uid.
            cmd.uid(uid).gid(gid);
        }
        cmd
    }

    fn own(self, path: &Path) {
        if let Some((uid, gid)) = self.0 {
            std::os::unix::fs::chown(path, Some(uid), Some(gid)).expect("chown");
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

fn run(cmd: &mut Command, what: &str, log: &Path) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    if !out.status.success() {
        panic!(
            "{what} failed ({}):\n{}\n{}\n(server log {})",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            log.display()
        );
    }
}

/// A running server; stopped (`stop_signal`, then SIGKILL after 10 s) and its files removed
/// on drop.
pub struct Server {
    child: Child,
    stop_signal: libc::c_int,
    pub port: u16,
    pub dir: TempDir,
    pub log: PathBuf,
}

impl Server {
    /// The server's log so far (statements included: both run with statement logging on).
    pub fn log_text(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    fn wait_ready(&mut self, ready: impl Fn() -> bool, what: &str) {
        let started = Instant::now();
        while !ready() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{what} exited at start ({status}):\n{}", self.log_text());
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{what} not ready after 60 s:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!(
            "{what} ready on 127.0.0.1:{} in {:?}",
            self.port,
            started.elapsed()
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill(2) with a plain pid and signal; the pid is our unreaped child.
            unsafe { libc::kill(pid, self.stop_signal) };
        }
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn temp_dir(prefix: &str, run_as: RunAs) -> TempDir {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("tempdir");
    run_as.own(dir.path());
    dir
}

/// PostgreSQL: `initdb` (superuser `admin`, password logins over TCP) then `postgres`.
pub fn postgres() -> Server {
    let started = Instant::now();
    let bin = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed (Debian package postgresql)")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("postgres").exists())
        .max()
        .expect("a /usr/lib/postgresql/VERSION/bin with postgres");
    let run_as = RunAs::for_account("postgres");
    let dir = temp_dir("sealbox-pg", run_as);
    let data = dir.path().join("data");
    let pwfile = dir.path().join("admin-password");
    std::fs::write(&pwfile, ADMIN_PASSWORD).unwrap();
    run_as.own(&pwfile);
    let log = dir.path().join("server.log");
    run(
        run_as
            .command(bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "admin",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ])
            .args(["--no-sync", "-E", "UTF8", "--locale=C"])
            .arg(format!("--pwfile={}", pwfile.display())),
        "initdb",
        &log,
    );
    let port = free_port();
    let out = std::fs::File::create(&log).unwrap();
    let child = run_as
        .command(bin.join("postgres"))
        .arg("-D")
        .arg(&data)
        .arg("-k")
        .arg(dir.path())
        .args(["-p", &port.to_string()])
        .args(["-c", "listen_addresses=127.0.0.1"])
        .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
        .args(["-c", "full_page_writes=off", "-c", "log_statement=all"])
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("start postgres");
    let mut server = Server {
        child,
        // Fast shutdown: a smart one (SIGTERM) waits for every session to end.
        stop_signal: libc::SIGINT,
        port,
        dir,
        log,
    };
    let isready = bin.join("pg_isready");
    let port_s = port.to_string();
    server.wait_ready(
        || {
            Command::new(&isready)
                .args(["-h", "127.0.0.1", "-p", &port_s, "-q"])
                .status()
                .is_ok_and(|s| s.success())
        },
        "postgres",
    );
    eprintln!("PostgreSQL set up in {:?}", started.elapsed());
    server
}

/// MariaDB: `mariadb-install-db` then `mariadbd`; `root@localhost` reached over the socket
/// sets the password of `admin@127.0.0.1`, the rotators' admin.
pub fn mariadb() -> Server {
    let started = Instant::now();
    let run_as = RunAs::for_account("mysql");
    let dir = temp_dir("sealbox-my", run_as);
    let data = dir.path().join("data");
    let socket = dir.path().join("sock");
    let log = dir.path().join("server.log");
    // Each server gets a temporary-table directory of its own: bootstraps that ran at once
    // with the shared /tmp crashed mariadbd (SIGSEGV in `ha_maria::drop_table`, CI of stop 35).
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).expect("mkdir tmp");
    run_as.own(&tmp);
    {
        // One bootstrap at a time in this test binary, for the same reason.
        static BOOTSTRAP: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one = BOOTSTRAP.lock().unwrap_or_else(|e| e.into_inner());
        run(
            run_as
                .command("mariadb-install-db")
                .args(["--no-defaults", "--auth-root-authentication-method=normal"])
                .args(["--skip-test-db", "--skip-name-resolve"])
                .arg(format!("--datadir={}", data.display()))
                .arg(format!("--tmpdir={}", tmp.display())),
            "mariadb-install-db",
            &log,
        );
    }
    let port = free_port();
    // The general log (statements) is the server's own file; its other output goes apart.
    let out = std::fs::File::create(dir.path().join("stdout.log")).unwrap();
    let child = run_as
        .command("mariadbd")
        .arg("--no-defaults")
        .arg(format!("--datadir={}", data.display()))
        .arg(format!("--tmpdir={}", tmp.display()))
        .arg(format!("--socket={}", socket.display()))
        .arg(format!("--port={port}"))
        .arg("--bind-address=127.0.0.1")
        .arg("--skip-name-resolve")
        .args(["--innodb-buffer-pool-size=16M", "--innodb-log-file-size=8M"])
        .arg("--innodb-flush-log-at-trx-commit=0")
        .arg("--general-log=1")
        .arg(format!("--general-log-file={}", log.display()))
        .arg(format!(
            "--log-error={}",
            dir.path().join("error.log").display()
        ))
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("start mariadbd");
    let mut server = Server {
        child,
        stop_signal: libc::SIGTERM,
        port,
        dir,
        log,
    };
    let socket_s = socket.display().to_string();
    let client = |sql: &str| {
        Command::new("mariadb")
            .args(["--no-defaults", "-u", "root", "-S", &socket_s, "-e", sql])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    server.wait_ready(|| client("SELECT 1"), "mariadbd");
    assert!(
        client(&format!(
            "CREATE USER 'admin'@'127.0.0.1' IDENTIFIED BY '{ADMIN_PASSWORD}'; \
             GRANT ALL ON *.* TO 'admin'@'127.0.0.1' WITH GRANT OPTION"
        )),
        "creating the admin user"
    );
    eprintln!("MariaDB set up in {:?}", started.elapsed());
    server
}
