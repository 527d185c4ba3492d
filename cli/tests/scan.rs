//! End-to-end: `sealbox scan` on real files, a real git repository with its pre-commit hook,
//! and a real local vault.
//!
//! Every test checks that no planted value, nor any 8-character piece of one, reaches stdout
//! or stderr, in text or JSON.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use support::{Scratch, code, run_with_env, stderr, stdout};

// Random strings in the providers' formats (none is a real credential).
const AWS_KEY_ID: &str = "AKIAW7HQ2ZKX4N5PLM3R";
const AWS_SECRET: &str = "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";
const GCP_API_KEY: &str = "AIzaR7kLm2Qx9Vb4Nw8Tc1Jh6Pz3Ys5Df0GuE-a";
const PEM_BODY: &str = "MIIEowIBAAKCAQEA7Vb3Lk9Qx2Rt8Wn5Ys1Hd4Jf6Pm0Zc7Ua3Eg9Ki2Lo5Nq8\nXw1Tb4Vc7Ym2Rk5Hj8Gf0Ds3Ap6Lz9Qn2Wx5Ec8Rv1Tb4Yu7Im0Ok3Pl6Aj9Sh2";
const JWT: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJzdmMtY3NwbSIsImlhdCI6MTcwMDAwMDAwMH0.Yk3Lp9Qz2Wx7Rv5Tn1Hc8Jd4Mf6Gb0Sa3Ue9Io2Kl5";
const GITHUB: &str = "ghp_Rk7Lm2Qx9Vb4Nw8Tc1Jh6Pz3Ys5Df0GuEaWqZ";
const SLACK: &str = "xoxb-918273645501-7364518290412-Qm4Vx8Lr2Tz6Kp0Wn3Hs9Jd1";
const STRIPE: &str = "sk_live_Tq5Wm8Zr2Lx6Nv9Kc3Hp7Jy1";
const DB_PASSWORD: &str = "Vq3r8TzK2mWxLp7";
const CH_PASSWORD: &str = "Nc5Hw9Yt2Ra6Km4";
const API_TOKEN: &str = "Hx4Tq8Lm2Vz6Rk0Pw3Nc7Yb5Gs9Jd1Fa";

fn planted() -> Vec<&'static str> {
    vec![
        AWS_KEY_ID,
        AWS_SECRET,
        GCP_API_KEY,
        PEM_BODY,
        JWT,
        GITHUB,
        SLACK,
        STRIPE,
        DB_PASSWORD,
        CH_PASSWORD,
        API_TOKEN,
    ]
}

/// No planted value, nor any 8 characters of one in a row, is in `o`'s output.
fn assert_nothing_leaked(o: &Output) {
    let all = format!("{}{}", stdout(o), stderr(o));
    for value in planted() {
        for line in value.lines() {
            let chars: Vec<char> = line.chars().collect();
            for w in chars.windows(8) {
                let piece: String = w.iter().collect();
                assert!(
                    !all.contains(&piece),
                    "{piece:?} of a planted value in:\n{all}"
                );
            }
        }
    }
}

fn write(root: &Path, rel: &str, body: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, body).unwrap();
}

/// A project tree with credentials in the shapes the user documents show: an env file, shell,
/// Python, YAML, JSON, a service-account file, a key file.
fn plant(root: &Path) {
    write(
        root,
        ".env",
        &format!(
            "CLICKHOUSE_HOST=ch.internal\nCLICKHOUSE_PASSWORD={CH_PASSWORD}\nAPI_TOKEN={API_TOKEN}\n"
        ),
    );
    write(
        root,
        "scripts/deploy.sh",
        &format!(
            "#!/bin/sh\nexport AWS_ACCESS_KEY_ID={AWS_KEY_ID}\n\
             export AWS_SECRET_ACCESS_KEY=\"{AWS_SECRET}\"\nexport GITHUB_TOKEN={GITHUB}\n"
        ),
    );
    write(
        root,
        "src/cspm/db.py",
        &format!(
            "import psycopg2\n\nconn = psycopg2.connect(host=\"db\", user=\"cspm\", password=\"{DB_PASSWORD}\")\n"
        ),
    );
    write(
        root,
        "config/app.yaml",
        &format!(
            "slack:\n  bot_token: {SLACK}\nstripe:\n  key: {STRIPE}\nauth:\n  bearer: {JWT}\n"
        ),
    );
    write(
        root,
        "config/maps.json",
        &format!("{{\n  \"maps_key\": \"{GCP_API_KEY}\"\n}}\n"),
    );
    write(
        root,
        "keys/deploy_key",
        &format!(
            "-----BEGIN OPENSSH PRIVATE KEY-----\n{PEM_BODY}\n-----END OPENSSH PRIVATE KEY-----\n"
        ),
    );
}

fn scan(args: &[&str]) -> Output {
    run_with_env(args, b"", &[])
}

#[test]
fn scan_reports_every_planted_credential_masked_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    plant(root);
    let root_s = root.to_str().unwrap();

    let o = scan(&["--json", "scan", root_s]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert_nothing_leaked(&o);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let mut got: Vec<(String, u64, String)> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let path = f["path"].as_str().unwrap();
            let rel = Path::new(path)
                .strip_prefix(root)
                .unwrap()
                .display()
                .to_string();
            (
                rel,
                f["line"].as_u64().unwrap(),
                f["rule"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    got.sort();
    let want = [
        (".env", 2, "password-unquoted"),
        (".env", 3, "generic-secret"),
        ("config/app.yaml", 2, "slack-token"),
        ("config/app.yaml", 4, "stripe-key"),
        ("config/app.yaml", 6, "jwt"),
        ("config/maps.json", 2, "gcp-api-key"),
        ("keys/deploy_key", 1, "private-key"),
        ("scripts/deploy.sh", 2, "aws-access-key-id"),
        ("scripts/deploy.sh", 3, "aws-secret-access-key"),
        ("scripts/deploy.sh", 4, "github-token"),
        ("src/cspm/db.py", 3, "password-assignment"),
    ];
    let want: Vec<(String, u64, String)> = want
        .iter()
        .map(|(p, l, r)| ((*p).to_owned(), *l, (*r).to_owned()))
        .collect();
    assert_eq!(got, want);
    let first = &v["findings"][0];
    // A 15-character password shows 3 characters (a quarter, at most 4).
    assert_eq!(first["preview"], format!("{}…", &CH_PASSWORD[..3]));
    assert_eq!(v["files_scanned"], 6);

    let o = scan(&["scan", root_s]);
    assert_eq!(code(&o), 1);
    assert_nothing_leaked(&o);
    let text = stdout(&o);
    assert!(text.contains("deploy.sh:2:"), "{text}");
    assert!(text.contains("aws-access-key-id"), "{text}");
    assert!(text.contains("AKIA…"), "{text}");
    assert!(text.contains("11 findings in 6 files"), "{text}");
}

#[test]
fn a_tree_of_placeholders_and_secret_manager_reads_is_clean() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "scripts/setup.sh",
        "export CLICKHOUSE_HOST=\"your-host.clickhouse.cloud\"\n\
         export CLICKHOUSE_PASSWORD=\"your-secure-password\"\n",
    );
    write(
        dir.path(),
        "src/cspm/core/secrets.py",
        "client = boto3.client('secretsmanager')\n\
         secret = client.get_secret_value(SecretId='cspm/db')\n\
         db_password = json.loads(secret['SecretString'])['password']\n",
    );
    write(
        dir.path(),
        ".env.example",
        "DB_PASSWORD=changeme\nDATABASE_URL=postgresql://user:${DB_PASSWORD}@localhost/db\n",
    );
    let o = scan(&["scan", dir.path().to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("0 findings"), "{}", stdout(&o));
}

#[test]
fn inline_allow_comments_and_a_rules_file_accept_findings() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(
        root,
        "a.env",
        &format!("API_TOKEN={API_TOKEN} # sealbox:allow revoked, kept for the parser test\n"),
    );
    write(
        root,
        "fixtures/b.env",
        &format!("DB_PASSWORD={DB_PASSWORD}\n"),
    );
    write(root, "c.txt", "ticket = acme_q8rt2vn5lk9xw3jd7hs1fp6g\n");
    let rules = root.join("rules.toml");
    std::fs::write(
        &rules,
        "[allowlist]\npaths = [\"**/fixtures/**\"]\n\
         [[rule]]\nid = \"acme-ticket\"\ndescription = \"ACME ticket\"\nkeywords = [\"acme_\"]\n\
         regex = '''\\b(?P<secret>acme_[a-z0-9]{24})\\b'''\n",
    )
    .unwrap();
    let scanned = [
        root.join("a.env"),
        root.join("fixtures"),
        root.join("c.txt"),
    ];
    let scanned: Vec<&str> = scanned.iter().map(|p| p.to_str().unwrap()).collect();

    let mut args = vec!["--json", "scan"];
    args.extend(&scanned);
    let o = scan(&args);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    // Without the rules file: the fixture is found, the allowed line is not, the ACME ticket
    // is unknown.
    let rules_of = |v: &serde_json::Value| -> Vec<String> {
        v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["rule"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(rules_of(&v), ["password-unquoted"]);
    assert_eq!(code(&o), 1);

    let mut args = vec!["--json", "scan", "--rules", rules.to_str().unwrap()];
    args.extend(&scanned);
    let o = scan(&args);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(rules_of(&v), ["acme-ticket"]);
    assert_eq!(code(&o), 1);
    assert_nothing_leaked(&o);
}

#[test]
fn errors_exit_2_and_say_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[[rule]]\nid = \"x\"\nregex = '(?P<secret>'\n").unwrap();
    let o = scan(&[
        "scan",
        "--rules",
        bad.to_str().unwrap(),
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("bad.toml"), "{}", stderr(&o));

    let o = scan(&["scan", dir.path().join("missing").to_str().unwrap()]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("does not exist"), "{}", stderr(&o));

    let o = scan(&["scan", "--staged", "--repo", dir.path().to_str().unwrap()]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("git"), "{}", stderr(&o));
}

fn git(repo: &Path, args: &[&str]) -> Output {
    Command::new("git")
        .arg("-C")
        .arg(repo)
        .args([
            "-c",
            "user.name=scan test",
            "-c",
            "user.email=scan@test.invalid",
        ])
        .args([
            "-c",
            "core.hooksPath=.git/hooks",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .env("PATH", path_with_sealbox())
        .env_remove("SEALBOX_VAULT")
        .env_remove("SEALBOX_KEY_FILE")
        .env_remove("SEALBOX_CONFIG")
        .output()
        .expect("run git")
}

/// PATH with the directory of the `sealbox` binary under test first, as a hook finds it.
fn path_with_sealbox() -> String {
    let bin = Path::new(env!("CARGO_BIN_EXE_sealbox")).parent().unwrap();
    format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

#[test]
fn staged_scan_reports_added_lines_only_and_the_hook_blocks_the_commit() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path();
    let repo_s = repo.to_str().unwrap();
    assert!(git(repo, &["init", "-q"]).status.success());
    // An old credential already committed (not this commit's business).
    write(
        repo,
        "settings.py",
        &format!("DEBUG = True\npassword = \"{DB_PASSWORD}\"\n"),
    );
    assert!(git(repo, &["add", "."]).status.success());
    assert!(git(repo, &["commit", "-q", "-m", "old"]).status.success());

    // Nothing staged: clean.
    let o = scan(&["scan", "--staged", "--repo", repo_s]);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));

    // A new line with a token is staged; another credential is only in the work tree.
    write(
        repo,
        "settings.py",
        &format!("DEBUG = True\npassword = \"{DB_PASSWORD}\"\nGITHUB_TOKEN = \"{GITHUB}\"\n"),
    );
    assert!(git(repo, &["add", "settings.py"]).status.success());
    write(repo, "local.env", &format!("API_TOKEN={API_TOKEN}\n"));
    let o = scan(&["--json", "scan", "--staged", "--repo", repo_s]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert_nothing_leaked(&o);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let findings = v["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 1, "{v}");
    assert_eq!(findings[0]["path"], "settings.py");
    assert_eq!(findings[0]["line"], 3);
    assert_eq!(findings[0]["rule"], "github-token");

    // The shipped hook refuses the commit, and lets it through once the line is allowed.
    let hook = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scan/hooks/pre-commit");
    let hooks = repo.join(".git/hooks/pre-commit");
    std::fs::copy(&hook, &hooks).unwrap();
    let o = git(repo, &["commit", "-q", "-m", "add token"]);
    assert!(!o.status.success(), "the hook let a credential through");
    assert_nothing_leaked(&o);
    // Git sends a hook's output to its standard error.
    let said = format!("{}{}", stdout(&o), stderr(&o));
    assert!(said.contains("github-token"), "{said}");
    write(
        repo,
        "settings.py",
        &format!(
            "DEBUG = True\npassword = \"{DB_PASSWORD}\"\nGITHUB_TOKEN = \"{GITHUB}\"  # sealbox:allow\n"
        ),
    );
    assert!(git(repo, &["add", "settings.py"]).status.success());
    let o = git(repo, &["commit", "-q", "-m", "add allowed token"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
}

#[test]
fn findings_that_are_vault_values_name_the_secret_and_its_version() {
    let v = Scratch::init();
    // The database password was rotated: its old value is PREVIOUS, the new one CURRENT.
    v.ok(
        &["put", "predis/prod/database/password"],
        CH_PASSWORD.as_bytes(),
    );
    v.ok(
        &["put", "predis/prod/database/password"],
        DB_PASSWORD.as_bytes(),
    );
    // A JSON secret, as the CSPM document stores it.
    let json = format!(r#"{{"username":"cspm","password":"{GITHUB}"}}"#);
    v.ok(&["put", "cspm/db"], json.as_bytes());
    // echo adds a newline: the value matches without it too.
    v.ok(
        &["put", "ci/api-token"],
        format!("{API_TOKEN}\n").as_bytes(),
    );

    let tree = tempfile::tempdir().unwrap();
    write(
        tree.path(),
        "app.env",
        &format!(
            "DB_PASSWORD={CH_PASSWORD}\nNEW_DB_PASSWORD={DB_PASSWORD}\nGH_TOKEN={GITHUB}\n\
             API_TOKEN={API_TOKEN}\nSTRIPE_KEY={STRIPE}\n"
        ),
    );
    let o = v.run(&["--json", "scan", tree.path().to_str().unwrap()], b"");
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert_nothing_leaked(&o);
    let doc: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let f = doc["findings"].as_array().unwrap();
    assert_eq!(f.len(), 5, "{doc}");
    let m = |i: usize| &f[i]["vault"][0];
    assert_eq!(m(0)["name"], "predis/prod/database/password");
    assert_eq!(m(0)["current"], false);
    assert_eq!(m(0)["stages"], serde_json::json!(["PREVIOUS"]));
    assert_eq!(m(1)["name"], "predis/prod/database/password");
    assert_eq!(m(1)["current"], true);
    assert_eq!(m(2)["name"], "cspm/db");
    assert_eq!(m(2)["field"], "password");
    assert_eq!(m(3)["name"], "ci/api-token");
    assert!(f[4].get("vault").is_none(), "{doc}");
    assert_eq!(doc["vault"]["versions"], 4);

    let o = v.run(&["scan", tree.path().to_str().unwrap()], b"");
    assert_nothing_leaked(&o);
    let text = stdout(&o);
    assert!(
        text.contains("an older version") && text.contains("leaked old credential"),
        "{text}"
    );
    assert!(
        text.contains("the CURRENT value of predis/prod/database/password"),
        "{text}"
    );

    // Nothing the scan left on disk holds a value in the clear: only the planted file does.
    for entry in std::fs::read_dir(v.dir()).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap_or_default();
        for value in planted() {
            assert!(
                !bytes.windows(value.len()).any(|w| w == value.as_bytes()),
                "{} holds a value in the clear",
                path.display()
            );
        }
    }
}

#[test]
fn history_scan_finds_credentials_removed_since_and_names_their_commits() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path();
    let repo_s = repo.to_str().unwrap();
    assert!(git(repo, &["init", "-q"]).status.success());
    let commit = |msg: &str| {
        assert!(git(repo, &["add", "-A"]).status.success());
        assert!(git(repo, &["commit", "-q", "-m", msg]).status.success());
        let o = git(repo, &["rev-parse", "HEAD"]);
        stdout(&o).trim().to_owned()
    };
    write(repo, "README", "service\n");
    write(
        repo,
        "deploy/app.env",
        &format!("HOST=db\nDB_PASSWORD={DB_PASSWORD}\n"),
    );
    let first = commit("add deploy settings");
    // The password is "removed" from the file, but stays in history.
    write(
        repo,
        "deploy/app.env",
        "HOST=db\nDB_PASSWORD=${DB_PASSWORD}\n",
    );
    commit("read the password from the environment");
    write(
        repo,
        "keys/deploy_key",
        &format!(
            "x\n-----BEGIN OPENSSH PRIVATE KEY-----\n{PEM_BODY}\n-----END OPENSSH PRIVATE KEY-----\n"
        ),
    );
    let third = commit("add deploy key");

    let o = scan(&["--json", "scan", "--history", "--repo", repo_s]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert_nothing_leaked(&o);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let got: Vec<(String, String, u64, String)> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["commit"].as_str().unwrap().to_owned(),
                f["path"].as_str().unwrap().to_owned(),
                f["line"].as_u64().unwrap(),
                f["rule"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                first.clone(),
                "deploy/app.env".to_owned(),
                2,
                "password-unquoted".to_owned()
            ),
            (
                third.clone(),
                "keys/deploy_key".to_owned(),
                2,
                "private-key".to_owned()
            ),
        ]
    );

    let o = scan(&["scan", "--history", "--since", &first, "--repo", repo_s]);
    assert_eq!(code(&o), 1);
    let text = stdout(&o);
    assert!(text.contains(&third) && !text.contains(&first), "{text}");
    assert!(text.contains("1 finding in 1 file"), "{text}");
}

#[test]
fn fix_moves_env_values_into_the_vault_and_rewrites_the_file_with_a_backup() {
    let v = Scratch::init();
    // One value is already the CURRENT value of a secret: --fix reuses that name.
    v.ok(&["put", "avesa/dev/api-token"], API_TOKEN.as_bytes());
    let tree = tempfile::tempdir().unwrap();
    let env = tree.path().join("app.env");
    let original = format!(
        "CLICKHOUSE_HOST=ch.internal\nexport CLICKHOUSE_PASSWORD=\"{CH_PASSWORD}\"\n\
         API_TOKEN={API_TOKEN}\nDATABASE_URL=postgresql://avesa:{DB_PASSWORD}@db/avesa\n"
    );
    std::fs::write(&env, &original).unwrap();
    let env_s = env.to_str().unwrap();

    // A dry run shows the diff, masked, and changes nothing.
    let o = v.run(
        &["scan", "--fix", "--dry-run", "--prefix", "avesa/dev", env_s],
        b"",
    );
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert_nothing_leaked(&o);
    let text = stdout(&o);
    assert!(
        text.contains("+export CLICKHOUSE_PASSWORD=\"${CLICKHOUSE_PASSWORD}\""),
        "{text}"
    );
    assert!(text.contains("would move"), "{text}");
    assert_eq!(std::fs::read_to_string(&env).unwrap(), original);
    assert!(
        v.run(&["get", "avesa/dev/clickhouse-password"], b"")
            .status
            .code()
            == Some(3)
    );

    // The real run stores the new value, reuses the stored one, and leaves the URL (no
    // reference form inside a URL) for the user.
    let o = v.run(
        &["--json", "scan", "--fix", "--prefix", "avesa/dev", env_s],
        b"",
    );
    assert_nothing_leaked(&o);
    assert_eq!(
        code(&o),
        1,
        "the URL's password is still hard-coded: {}",
        stderr(&o)
    );
    let doc: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let fixed = doc["fix"]["fixed"].as_array().unwrap();
    let names: Vec<(&str, bool)> = fixed
        .iter()
        .map(|f| (f["name"].as_str().unwrap(), f["stored"].as_bool().unwrap()))
        .collect();
    assert_eq!(
        names,
        [
            ("avesa/dev/clickhouse-password", true),
            ("avesa/dev/api-token", false)
        ]
    );
    assert_eq!(doc["fix"]["left"][0]["line"], 4);
    assert_eq!(
        std::fs::read_to_string(&env).unwrap(),
        format!(
            "CLICKHOUSE_HOST=ch.internal\nexport CLICKHOUSE_PASSWORD=\"${{CLICKHOUSE_PASSWORD}}\"\n\
             API_TOKEN=${{API_TOKEN}}\nDATABASE_URL=postgresql://avesa:{DB_PASSWORD}@db/avesa\n"
        )
    );
    let backup = tree.path().join("app.env.sealbox-backup");
    assert_eq!(std::fs::read_to_string(&backup).unwrap(), original);
    let stored = v.run(&["get", "avesa/dev/clickhouse-password", "--reveal"], b"");
    assert_eq!(stdout(&stored), CH_PASSWORD);

    // Scanned again, only the URL is left.
    let o = v.run(&["--json", "scan", env_s], b"");
    let doc: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(doc["findings"].as_array().unwrap().len(), 1, "{doc}");
    assert_eq!(doc["findings"][0]["rule"], "url-password");
}

#[test]
fn fix_rewrites_yaml_and_json_values_to_sb_references_and_nothing_else() {
    let v = Scratch::init();
    let tree = tempfile::tempdir().unwrap();
    let yaml = tree.path().join("application.yml");
    let yaml_text = format!(
        "# billing\nspring:\n  datasource:\n    username: billing\n    password: {DB_PASSWORD}  # rotated monthly\n  \
         mail:\n    password: \"{CH_PASSWORD}\"\nreports:\n  url: postgresql://reports:{API_TOKEN}@db/reports\n"
    );
    std::fs::write(&yaml, &yaml_text).unwrap();
    let json = tree.path().join("appsettings.json");
    let json_text = format!(
        "{{\n  \"Stripe\": {{ \"SecretKey\": \"{STRIPE}\" }},\n  \"Slack\": {{\"token\": \"{SLACK}\", \"channel\": \"#ops\"}}\n}}\n"
    );
    std::fs::write(&json, &json_text).unwrap();
    let dir_s = tree.path().to_str().unwrap();

    let o = v.run(
        &["scan", "--fix", "--dry-run", "--prefix", "billing", dir_s],
        b"",
    );
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert_nothing_leaked(&o);
    let text = stdout(&o);
    assert!(
        text.contains("+    password: sb:///billing/spring-datasource-password  # rotated monthly"),
        "{text}"
    );
    assert!(
        text.contains(
            "+  \"Slack\": {\"token\": \"sb:///billing/slack-token\", \"channel\": \"#ops\"}"
        ),
        "{text}"
    );
    assert_eq!(std::fs::read_to_string(&yaml).unwrap(), yaml_text);
    assert_eq!(std::fs::read_to_string(&json).unwrap(), json_text);

    let o = v.run(
        &["--json", "scan", "--fix", "--prefix", "billing", dir_s],
        b"",
    );
    assert_nothing_leaked(&o);
    assert_eq!(code(&o), 1, "the URL's password stays: {}", stderr(&o));
    // Byte for byte, the files differ only where the values were.
    assert_eq!(
        std::fs::read_to_string(&yaml).unwrap(),
        yaml_text
            .replace(DB_PASSWORD, "sb:///billing/spring-datasource-password")
            .replace(CH_PASSWORD, "sb:///billing/spring-mail-password")
    );
    assert_eq!(
        std::fs::read_to_string(&json).unwrap(),
        json_text
            .replace(STRIPE, "sb:///billing/stripe-secretkey")
            .replace(SLACK, "sb:///billing/slack-token")
    );
    let parsed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(parsed["Slack"]["channel"], "#ops");
    for (file, original) in [(&yaml, &yaml_text), (&json, &json_text)] {
        let mut backup = file.as_os_str().to_owned();
        backup.push(".sealbox-backup");
        assert_eq!(&std::fs::read_to_string(backup).unwrap(), original);
    }
    for (name, value) in [
        ("billing/spring-datasource-password", DB_PASSWORD),
        ("billing/spring-mail-password", CH_PASSWORD),
        ("billing/stripe-secretkey", STRIPE),
        ("billing/slack-token", SLACK),
    ] {
        let got = v.run(&["get", name, "--reveal"], b"");
        assert_eq!(stdout(&got), value, "{name}");
    }
    // Scanned again, the references are not findings; only the URL is left (the backups hold
    // the values, as they must, until the user deletes them).
    let o = v.run(
        &[
            "--json",
            "scan",
            yaml.to_str().unwrap(),
            json.to_str().unwrap(),
        ],
        b"",
    );
    let doc: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let rules: Vec<&str> = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["rule"].as_str().unwrap())
        .collect();
    assert_eq!(rules, ["url-password"], "{doc}");
}

/// SARIF 2.1.0 as GitHub code scanning takes it: `version`, `runs[].tool.driver` with the
/// rules, and per result `ruleId` (and a `ruleIndex` pointing at that rule), `message.text`
/// and a physical location relative to the source root.
#[test]
fn sarif_output_is_a_2_1_0_log_of_every_finding_masked() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    plant(root);
    let o = Command::new(env!("CARGO_BIN_EXE_sealbox"))
        .args(["scan", "--format", "sarif", "."])
        .current_dir(root)
        .env_remove("SEALBOX_VAULT")
        .env_remove("SEALBOX_KEY_FILE")
        .env_remove("SEALBOX_CONFIG")
        .output()
        .unwrap();
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert_nothing_leaked(&o);
    let log: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(log["version"], "2.1.0");
    assert!(log["$schema"].as_str().unwrap().contains("sarif-2.1.0"));
    let runs = log["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1);
    let driver = &runs[0]["tool"]["driver"];
    assert_eq!(driver["name"], "sealbox-scan");
    let rules = driver["rules"].as_array().unwrap();
    assert!(
        rules
            .iter()
            .all(|r| r["id"].is_string() && r["shortDescription"]["text"].is_string())
    );
    assert_eq!(runs[0]["invocations"][0]["executionSuccessful"], true);
    let mut got: Vec<(String, u64, String)> = Vec::new();
    for r in runs[0]["results"].as_array().unwrap() {
        let id = r["ruleId"].as_str().unwrap();
        let index = r["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(rules[index]["id"], id);
        assert_eq!(r["level"], "error");
        assert!(r["message"]["text"].as_str().unwrap().contains('…'), "{r}");
        let loc = &r["locations"][0]["physicalLocation"];
        assert_eq!(loc["artifactLocation"]["uriBaseId"], "%SRCROOT%");
        let uri = loc["artifactLocation"]["uri"].as_str().unwrap();
        assert!(!uri.starts_with('.') || uri.starts_with(".env"), "{uri}");
        let region = &loc["region"];
        let (line, end_line) = (
            region["startLine"].as_u64().unwrap(),
            region["endLine"].as_u64().unwrap(),
        );
        assert!(
            region["startColumn"].as_u64().unwrap() >= 1 && end_line >= line,
            "{region}"
        );
        got.push((uri.to_owned(), line, id.to_owned()));
    }
    got.sort();
    let want: Vec<(String, u64, String)> = [
        (".env", 2, "password-unquoted"),
        (".env", 3, "generic-secret"),
        ("config/app.yaml", 2, "slack-token"),
        ("config/app.yaml", 4, "stripe-key"),
        ("config/app.yaml", 6, "jwt"),
        ("config/maps.json", 2, "gcp-api-key"),
        ("keys/deploy_key", 1, "private-key"),
        ("scripts/deploy.sh", 2, "aws-access-key-id"),
        ("scripts/deploy.sh", 3, "aws-secret-access-key"),
        ("scripts/deploy.sh", 4, "github-token"),
        ("src/cspm/db.py", 3, "password-assignment"),
    ]
    .iter()
    .map(|(p, l, r)| ((*p).to_owned(), *l, (*r).to_owned()))
    .collect();
    assert_eq!(got, want);

    // --format json is the --json document.
    let o = scan(&["scan", "--format", "json", root.to_str().unwrap()]);
    assert_eq!(code(&o), 1);
    let doc: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(doc["findings"].as_array().unwrap().len(), 11);
}

#[test]
fn install_hook_writes_the_hook_git_runs_and_keeps_another_one() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path();
    let repo_s = repo.to_str().unwrap();
    assert!(git(repo, &["init", "-q"]).status.success());
    let o = scan(&["scan", "install-hook", "--repo", repo_s]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let hook = repo.join(".git/hooks/pre-commit");
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scan/hooks/pre-commit");
    assert_eq!(
        std::fs::read(&hook).unwrap(),
        std::fs::read(&shipped).unwrap()
    );
    // Installing again changes nothing.
    let o = scan(&["scan", "install-hook", "--repo", repo_s]);
    assert_eq!(code(&o), 0);
    assert!(stdout(&o).contains("already"), "{}", stdout(&o));

    // Git runs it: a commit adding a token is refused.
    write(
        repo,
        "settings.py",
        &format!("GITHUB_TOKEN = \"{GITHUB}\"\n"),
    );
    assert!(git(repo, &["add", "."]).status.success());
    let o = git(repo, &["commit", "-q", "-m", "add token"]);
    assert!(
        !o.status.success(),
        "the installed hook let a credential through"
    );
    assert_nothing_leaked(&o);

    // Another hook is not overwritten, unless --replace, which keeps it aside.
    std::fs::write(&hook, "#!/bin/sh\nexec make lint\n").unwrap();
    let o = scan(&["scan", "install-hook", "--repo", repo_s]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("--replace"), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(&hook).unwrap(),
        "#!/bin/sh\nexec make lint\n"
    );
    let o = scan(&["scan", "install-hook", "--replace", "--repo", repo_s]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(repo.join(".git/hooks/pre-commit.sealbox-backup")).unwrap(),
        "#!/bin/sh\nexec make lint\n"
    );
    assert_eq!(
        std::fs::read(&hook).unwrap(),
        std::fs::read(&shipped).unwrap()
    );
}

#[test]
fn a_dash_scans_standard_input() {
    let input = format!("deploy:\n  token: {GITHUB}\n");
    let o = run_with_env(&["--json", "scan", "-"], input.as_bytes(), &[]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert_nothing_leaked(&o);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["findings"][0]["path"], "<stdin>");
    assert_eq!(v["findings"][0]["line"], 2);
    assert_eq!(v["findings"][0]["rule"], "github-token");
    let o = run_with_env(&["scan", "-"], b"nothing here\n", &[]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
}

#[test]
fn a_baseline_accepts_known_findings_and_reports_new_ones() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    plant(root);
    let root_s = root.to_str().unwrap();
    let baseline = tempfile::tempdir().unwrap();
    let file = baseline.path().join("sealbox-baseline.txt");
    let file_s = file.to_str().unwrap();
    let o = scan(&["scan", "--write-baseline", file_s, root_s]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let written = std::fs::read_to_string(&file).unwrap();
    assert_eq!(written.lines().filter(|l| !l.starts_with('#')).count(), 11);
    for value in planted() {
        for line in value.lines() {
            assert!(!written.contains(&line[..8]), "{written}");
        }
    }

    let o = scan(&["scan", "--baseline", file_s, root_s]);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("11 accepted by the baseline"),
        "{}",
        stdout(&o)
    );

    // Lines added above a known finding keep it known; a new credential is reported.
    let env = root.join(".env");
    let old = std::fs::read_to_string(&env).unwrap();
    std::fs::write(
        &env,
        format!("# moved down\n\n{old}DB_PASSWORD={DB_PASSWORD}\n"),
    )
    .unwrap();
    let o = scan(&["--json", "scan", "--baseline", file_s, root_s]);
    assert_eq!(code(&o), 1);
    assert_nothing_leaked(&o);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let f = v["findings"].as_array().unwrap();
    assert_eq!(f.len(), 1, "{v}");
    assert_eq!(f[0]["line"], 6);
    assert_eq!(v["baselined"], 11);
}
