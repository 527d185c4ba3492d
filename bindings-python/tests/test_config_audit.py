"""Config loading and the audit events that Python calls produce."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import sealbox
from conftest import fresh_value


def write_config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "sealbox.yaml"
    path.write_text(body, encoding="utf-8")
    return path


def audited_config(tmp_path: Path, extra: str = "") -> Path:
    return write_config(
        tmp_path,
        f"""
secrets:
  provider: memory
  config:
    seed:
      predis/prod/api/token: seeded-token
principal: svc:predis-cache
cache: {{ttl: 1m}}
audit: {{path: ./audit.jsonl, mode: strict}}
{extra}
""",
    )


def read_events(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_open_reads_stores_principal_and_seed(tmp_path: Path) -> None:
    with sealbox.Sealbox.open(audited_config(tmp_path)) as sb:
        assert sb.principal == "svc:predis-cache"
        assert sb.get("predis/prod/api/token").equals(b"seeded-token")
    with sealbox.Sealbox.open(str(audited_config(tmp_path)), principal="user:alice") as sb:
        assert sb.principal == "user:alice"


def test_python_calls_produce_audit_events_without_values(tmp_path: Path) -> None:
    config = audited_config(tmp_path)
    value = fresh_value()
    text = bytes(value).decode()
    with sealbox.Sealbox.open(config) as sb:
        sb.put("predis/prod/database/password", value)
        sb.get("predis/prod/database/password").close()
        sb.get("predis/prod/database/password").close()  # a cache hit, audited too
        with pytest.raises(sealbox.NotFound):
            sb.get("predis/prod/missing")
        sb.as_principal("user:alice").get("predis/prod/api/token").close()
        sb.list("predis/")
        sb.delete("predis/prod/database/password", force=True)
        sb.flush_audit()
    log = tmp_path / "audit.jsonl"
    raw = log.read_text(encoding="utf-8")
    assert text not in raw and "seeded-token" not in raw
    events = read_events(log)
    summary = [(e["action"], e["resource"], e["user"], e["success"]) for e in events]
    assert ("write", "predis/prod/database/password", "svc:predis-cache", True) in summary
    reads = [s for s in summary if s[:2] == ("read", "predis/prod/database/password")]
    assert len(reads) == 2 and all(s[3] for s in reads)
    assert ("read", "predis/prod/missing", "svc:predis-cache", False) in summary
    assert ("read", "predis/prod/api/token", "user:alice", True) in summary
    assert ("delete", "predis/prod/database/password", "svc:predis-cache", True) in summary
    assert any(s[0] == "list" for s in summary)
    for e in events:
        assert {"timestamp", "level", "event", "source_ip", "seq", "prev_hash", "hash"} <= e.keys()


def test_audit_verify_passes_then_detects_an_edit(tmp_path: Path) -> None:
    with sealbox.Sealbox.open(audited_config(tmp_path)) as sb:
        for _ in range(3):
            sb.get("predis/prod/api/token").close()
        sb.flush_audit()
    log = tmp_path / "audit.jsonl"
    report = sealbox.audit_verify(log)
    assert report.ok and bool(report)
    assert report.lines >= 3
    assert report.problem_kind is None
    lines = log.read_text(encoding="utf-8").splitlines()
    lines[1] = lines[1].replace('"user":"svc:predis-cache"', '"user":"svc:intruder"')
    log.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tampered = sealbox.audit_verify(log)
    assert not tampered.ok
    assert (tampered.problem_line, tampered.problem_kind) == (2, "edited")
    assert "problem=edited" in repr(tampered)


def test_audit_verify_fails_when_the_anchor_is_deleted(tmp_path: Path) -> None:
    with sealbox.Sealbox.open(audited_config(tmp_path)) as sb:
        for _ in range(3):
            sb.get("predis/prod/api/token").close()
        sb.flush_audit()
    log = tmp_path / "audit.jsonl"
    # Cut the tail and delete the anchor that would have told.
    lines = log.read_text(encoding="utf-8").splitlines()
    log.write_text("\n".join(lines[:-1]) + "\n", encoding="utf-8")
    (tmp_path / "audit.jsonl.head").unlink()
    report = sealbox.audit_verify(log)
    assert not report.ok and not report.anchored
    assert report.problem_kind == "missing_anchor"
    assert report.problem_detail is not None and "missing anchor" in report.problem_detail
    # Only for a log that never had an anchor.
    assert sealbox.audit_verify(log, allow_unanchored=True).ok


def test_audit_verify_needs_the_key(tmp_path: Path) -> None:
    (tmp_path / "audit.jsonl").write_text("", encoding="utf-8")
    with pytest.raises(sealbox.SealboxError) as info:
        sealbox.audit_verify(tmp_path / "audit.jsonl", key_file=tmp_path / "missing.key")
    assert info.value.kind == "io"
    assert not (tmp_path / "missing.key").exists(), "a verifier must not create keys"


def test_audit_verify_of_a_vault_config_uses_the_key_its_vault_keeps(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        """
secrets:
  provider: local
  config: {path: ./vault, key_file: ./master.key}
audit: {path: ./audit.jsonl}
""",
    )
    with sealbox.Sealbox.open(config) as sb:
        sb.put("app/db", fresh_value())
        sb.flush_audit()
    log = tmp_path / "audit.jsonl"
    # The chain key is wrapped by the vault's master key: nothing beside the log to steal.
    assert not (tmp_path / "audit.jsonl.key").exists()
    assert sealbox.audit_verify(log, config=config).ok
    with pytest.raises(sealbox.SealboxError):
        sealbox.audit_verify(log)


def test_policy_denial_raises_access_denied_and_is_audited(tmp_path: Path) -> None:
    config = audited_config(
        tmp_path,
        """policy:
  rules:
    - {principals: ["svc:predis-*"], allow: [read, write, list, delete], secrets: ["predis/prod/*"]}
""",
    )
    with sealbox.Sealbox.open(config) as sb:
        assert sb.get("predis/prod/api/token").equals("seeded-token")
        outsider = sb.as_principal("user:mallory")
        with pytest.raises(sealbox.AccessDenied) as info:
            outsider.get("predis/prod/api/token")
        assert "seeded-token" not in str(info.value)
        sb.flush_audit()
    denied = [
        e for e in read_events(tmp_path / "audit.jsonl") if e["user"] == "user:mallory"
    ]
    assert denied and denied[0]["success"] is False


def test_config_errors(tmp_path: Path) -> None:
    with pytest.raises(sealbox.ConfigError):
        sealbox.Sealbox.open(tmp_path / "missing.yaml")
    bad = write_config(tmp_path, "secrets: {provider: memory}\ncache: {tll: 5m}\n")
    with pytest.raises(sealbox.ConfigError, match="tll"):
        sealbox.Sealbox.open(bad)
    unknown = write_config(tmp_path, "secrets: {provider: nowhere}\n")
    with pytest.raises(sealbox.ConfigError):
        sealbox.Sealbox.open(unknown)


def test_a_pkcs11_master_key_block_reaches_the_registered_provider(tmp_path: Path) -> None:
    module = tmp_path / "no-such-hsm" / "libvendor-pkcs11.so"
    config = write_config(
        tmp_path,
        "secrets:\n  provider: local\n  config:\n    path: ./vault\n"
        f"    master_key: {{provider: pkcs11, module: {module}, token_label: t, "
        'pin: "4711", key_label: m}\n',
    )
    # Registered at import: the error is about the module, not an unknown provider.
    with pytest.raises(sealbox.ConfigError, match="libvendor-pkcs11.so") as info:
        sealbox.Sealbox.open(config)
    assert "unknown provider" not in str(info.value)
    assert "4711" not in str(info.value)
    assert not (tmp_path / "vault").exists()


def test_a_failed_reads_exception_carries_the_request_id_of_its_audit_line(tmp_path: Path) -> None:
    config = audited_config(
        tmp_path,
        """policy:
  rules:
    - {principals: ["svc:predis-*"], allow: [read, write, list, delete], secrets: ["predis/prod/*"]}
""",
    )
    with sealbox.Sealbox.open(config) as sb:
        with pytest.raises(sealbox.AccessDenied) as denied:
            sb.as_principal("user:mallory").get("predis/prod/api/token")
        with pytest.raises(sealbox.NotFound) as missing:
            sb.get("predis/prod/api/missing")
        sb.flush_audit()
    by_id = {e["request_id"]: e for e in read_events(tmp_path / "audit.jsonl")}
    assert denied.value.request_id is not None and missing.value.request_id is not None
    assert denied.value.request_id != missing.value.request_id
    denial = by_id[denied.value.request_id]
    assert (denial["event"], denial["user"], denial["success"]) == ("access.denied", "user:mallory", False)
    assert denial["resource"] == "predis/prod/api/token"
    not_found = by_id[missing.value.request_id]
    assert (not_found["event"], not_found["reason"], not_found["success"]) == ("secret.read", "not_found", False)
    assert not_found["resource"] == "predis/prod/api/missing"
    assert denied.value.provider_request_id is None, "no remote store was involved"


def test_a_client_without_audit_gives_no_request_id(sb: sealbox.Sealbox) -> None:
    with pytest.raises(sealbox.NotFound) as missing:
        sb.get("app/none")
    assert missing.value.request_id is None


def test_audit_verify_takes_a_rotated_set_and_finds_a_missing_file(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    config = write_config(
        tmp_path,
        """
secrets:
  provider: memory
  config:
    seed:
      predis/prod/api/token: seeded-token
principal: svc:predis-cache
audit: {path: ./logs/audit.jsonl, rotate_size: 1}
""",
    )
    # rotate_size 1: every batch after the first starts a new file.
    with sealbox.Sealbox.open(config) as sb:
        for _ in range(4):
            sb.get("predis/prod/api/token").close()
            sb.flush_audit()
    report = sealbox.audit_verify(tmp_path / "logs")
    assert report.ok, repr(report)
    assert len(report.files) >= 4 and report.retention_cut is None
    assert sealbox.audit_verify(tmp_path / "logs" / "audit.jsonl").ok
    rotated = sorted(p for p in (tmp_path / "logs").iterdir() if len(p.suffix) == 21)
    assert len(rotated) == len(report.files) - 1
    rotated[1].unlink()
    broken = sealbox.audit_verify(tmp_path / "logs")
    assert not broken.ok
    assert broken.problem_kind == "missing"
    assert broken.problem_file == str(rotated[2])
    assert broken.problem_line == 1
