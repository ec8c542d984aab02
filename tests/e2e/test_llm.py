"""The --llm provider choice (SPEC §10, §11): a provider that cannot run as configured (an unknown name, an
OPENAI_BASE_URL that is not http(s)://…) is bad configuration — one line, exit 2, nothing created on disk —
never a silent fallback to the builtin one; a good openai configuration starts."""
import subprocess

import pytest

from agentd import AGENTD_BIN, Agentd, random_secret, sanitizer_env


def run_cli(args, tmp_path, env_extra=None, timeout=30):
    env = sanitizer_env()
    env.update(env_extra or {})
    p = subprocess.run([AGENTD_BIN] + args, cwd=str(tmp_path), env=env, stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def test_openai_starts_with_a_good_configuration(tmp_path, monkeypatch):
    """--llm openai opens the provider from OPENAI_*: the server starts (the model server is only asked when
    a run needs it) and the provider's metrics are registered."""
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("OPENAI_MODEL", "some-model")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    srv = Agentd(tmp_path, ["--llm", "openai", "--llm-timeout", "5"]).start()
    try:
        r = srv.get("/metrics")
        assert r.status == 200
        assert "agentd_llm_request_seconds" in r.text()
    finally:
        srv.stop_and_check()
    assert "llm openai" in srv.stderr_text() or "llm openai" in open(srv.stdout_path).read()


@pytest.mark.parametrize("url", ["ftp://example.com/v1", "localhost:11434/v1", "http://", "http://a b/v1"])
@pytest.mark.parametrize("how", ["flag", "env"])
def test_openai_with_a_bad_base_url_is_a_startup_error(tmp_path, how, url):
    data = tmp_path / "data"
    args = ["--port", "0", "--data-dir", str(data), "--jwt-secret", random_secret()]
    env = {"OPENAI_BASE_URL": url}
    if how == "flag":
        args += ["--llm", "openai"]
    else:
        env["LLM_PROVIDER"] = "openai"
    rc, out, err = run_cli(args, tmp_path, env)
    assert rc == 2, (rc, out, err)
    lines = [ln for ln in (out + err).splitlines() if ln.strip()]
    assert len(lines) == 1, "expected one line, got %r" % lines
    assert "--llm" in lines[0] and "OPENAI_BASE_URL" in lines[0] and "http" in lines[0], lines[0]
    assert "listening" not in out
    # refused before the data directory and the database were made
    assert not data.exists(), list(data.iterdir())


def test_unknown_provider_is_rejected(tmp_path):
    rc, out, err = run_cli(["--data-dir", str(tmp_path / "d"), "--jwt-secret", random_secret(), "--llm", "gpt"],
                           tmp_path)
    assert rc == 2, (rc, out, err)
    assert "--llm" in out + err and "builtin or openai" in out + err
